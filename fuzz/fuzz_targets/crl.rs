//! `cargo +nightly fuzz run crl`: see `coalition_hub::fuzzing::crl`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::crl(data));
