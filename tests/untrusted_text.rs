//! Error lines quote untrusted input (a file's values, command-line arguments); the real binary
//! must print each as exactly one line with control characters and bidi overrides escaped, so a
//! crafted value cannot end the line, forge another, move the cursor or recolour the terminal.

use std::path::Path;
use std::process::Command;

/// Runs `coalition args` in `dir`; checks the exit code and that stderr is one line holding
/// `expected` and no character that [`coalition_hub::text::is_unsafe`] refuses.
fn check(dir: &Path, args: &[&str], code: i32, expected: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_coalition"))
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("COALITION_CERTS")
        .output()
        .expect("run coalition");
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr:?}");
    let line = stderr
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{args:?}: not one terminated line: {stderr:?}"));
    assert!(
        !line.chars().any(coalition_hub::text::is_unsafe),
        "{args:?}: raw control character in {line:?}"
    );
    assert!(line.starts_with("error: "), "{args:?}: {line:?}");
    assert!(
        line.contains(expected),
        "{args:?}: {line:?} lacks {expected:?}"
    );
}

#[test]
fn error_lines_escape_what_they_quote() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    // A JSON Lines hash list whose bad value holds "clear screen", a newline and an RLO.
    std::fs::write(
        d.join("index.jsonl"),
        "{\"type\":\"sha256\",\"hash\":\"\\u001b[2J\\nerror: forged\\u202e\"}\n",
    )
    .expect("write");
    // A CSV hash list whose bad value recolours the terminal.
    std::fs::write(d.join("index.csv"), "type,hash\nsha256,\x1b[31mzz\x7f\n").expect("write");
    std::fs::write(d.join("queries.txt"), format!("md5,{}\n", "ab".repeat(16))).expect("write");
    let matching = |index| ["match", "--index", index, "--queries", "queries.txt"];

    #[rustfmt::skip]
    let cases: &[(&[&str], i32, &str)] = &[
        (&matching("index.jsonl"), 1, r"index.jsonl:1: hash '\u{1b}[2J\nerror: forged\u{202e}' is not hex"),
        (&matching("index.csv"), 1, r"index.csv:2: hash '\u{1b}[31mzz\u{7f}' is not hex"),
        (&["pki", "init", "--member", "ev\x1b[2Jil\r\nerror: forged"], 1, r"'ev\u{1b}[2Jil\r\nerror: forged' is not a valid member id"),
        (&["init", "--quorum", "1\n\x1b]0;title\x07"], 2, r"invalid value '1\n\u{1b}]0;title\u{7}' for '--quorum"),
        (&["--bo\u{9b}31mgus\u{2066}"], 2, r"unexpected argument '--bo\u{9b}31mgus\u{2066}' found"),
    ];
    for (args, code, expected) in cases {
        check(d, args, *code, expected);
    }
}
