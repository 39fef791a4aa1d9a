//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same function its
//! `cargo fuzz` target runs (`coalition_hub::fuzzing`), on stable: an input that once crashed
//! a parser, or that reached deep into one, is checked on every `cargo test`.

use coalition_hub::fuzzing::TARGETS;
use std::path::Path;

#[test]
fn every_fuzz_corpus_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{name}: empty corpus");
        for input in &inputs {
            let bytes = std::fs::read(input).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{name}: {} panicked", input.display());
        }
        eprintln!("{name}: {} inputs", inputs.len());
    }
}

#[test]
fn every_target_has_a_fuzz_target_file_and_a_corpus() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        let file = fuzz.join(format!("fuzz_targets/{name}.rs"));
        let source = std::fs::read_to_string(&file).expect("target file");
        assert!(
            source.contains(&format!("coalition_hub::fuzzing::{name}(data)")),
            "{} calls the shared function",
            file.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} in fuzz/Cargo.toml"
        );
        assert!(fuzz.join("corpus").join(name).is_dir(), "{name} corpus");
    }
}

/// Found by the `proofs` target: expected proof lengths for sizes above 2^63 shifted a `u64` by
/// 64 (`attempt to shift right with overflow` with overflow checks; a wrong length without).
#[test]
fn proofs_for_sizes_above_two_to_the_63_are_refused_without_overflow() {
    use coalition_hub::log::{Hash, LeafIndex, TreeSize, verify_consistency, verify_inclusion};
    let h = Hash([7; 32]);
    let top = 1u64 << 63;
    for (old, new) in [(1, top + 1), (3, u64::MAX), (top - 1, top + 5)] {
        let result = verify_consistency(TreeSize(old), TreeSize(new), &h, &h, &[h; 3]);
        assert!(result.is_err(), "{old} -> {new}");
    }
    for (index, size) in [(0, top + 1), (5, u64::MAX), (top - 1, top + 1)] {
        let result = verify_inclusion(&h, LeafIndex(index), TreeSize(size), &[h; 2], &h);
        assert!(result.is_err(), "leaf {index} of {size}");
    }
}
