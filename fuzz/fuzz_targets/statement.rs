//! `cargo +nightly fuzz run statement`: see `coalition_hub::fuzzing::statement`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::statement(data));
