//! `cargo +nightly fuzz run sync_cursor`: see `coalition_hub::fuzzing::sync_cursor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::sync_cursor(data));
