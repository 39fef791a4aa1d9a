//! `cargo +nightly fuzz run signal`: see `coalition_hub::fuzzing::signal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::signal(data));
