//! `cargo +nightly fuzz run proofs`: see `coalition_hub::fuzzing::proofs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coalition_hub::fuzzing::proofs(data));
