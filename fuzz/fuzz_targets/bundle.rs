//! `cargo +nightly fuzz run bundle`: see `coalition_hub::fuzzing::bundle`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::bundle(data));
