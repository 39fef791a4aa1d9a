//! `cargo +nightly fuzz run hash_list`: see `coalition_hub::fuzzing::hash_list`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::hash_list(data));
