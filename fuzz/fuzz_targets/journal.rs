//! `cargo +nightly fuzz run journal`: see `coalition_hub::fuzzing::journal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::journal(data));
