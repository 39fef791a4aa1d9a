//! `cargo +nightly fuzz run checkpoint`: see `coalition_hub::fuzzing::checkpoint`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::checkpoint(data));
