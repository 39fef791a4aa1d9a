//! `cargo +nightly fuzz run envelope`: see `coalition_hub::fuzzing::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::envelope(data));
