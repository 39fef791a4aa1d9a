//! Untrusted text made safe to print on a terminal: control characters become visible escapes.
//!
//! Error messages quote what they reject (a hash from a file, a member id from the command
//! line, a reason from the hub). Printed raw, a crafted value could end the line and forge the
//! next one, move the cursor, clear or recolour the terminal (ANSI escape sequences), or reorder
//! what the reader sees (Unicode bidi overrides, CVE-2021-42574). [`escape_control`] is applied
//! where `main` prints.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal raw: C0 controls (including `\t`, `\n`, `\r`, ESC),
/// DEL and C1 controls (U+0080–U+009F, including NEL and the 8-bit CSI), the Unicode bidi
/// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), and the Unicode line and
/// paragraph separators (U+2028, U+2029), which some viewers treat as line breaks.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
        )
}

/// `text` with every [`is_unsafe`] character written as its Rust escape: `\t`, `\n`, `\r`,
/// otherwise `\u{…}` in lowercase hex (`\u{1b}`, `\u{9b}`, `\u{202e}`). Everything else,
/// backslashes included, is kept as it is, so ordinary messages read unchanged; the result holds
/// no unsafe character and is one line.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            // `escape_default` gives `\t`, `\n`, `\r` and `\u{…}` for every other unsafe char
            // (none of them is printable ASCII, quote or backslash).
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(escape_control(input), expected, "{input:?}");
    }

    #[test]
    fn escapes_what_could_move_the_cursor_or_reorder_text() {
        check(
            "plain text, 'quoted' and C:\\path",
            "plain text, 'quoted' and C:\\path",
        );
        check("café ☕ 日本", "café ☕ 日本");
        check("a\nb", "a\\nb");
        check("a\r\nb", "a\\r\\nb");
        check("a\tb", "a\\tb");
        check("\0", "\\u{0}");
        check("\x1b[2J\x1b[31mred", "\\u{1b}[2J\\u{1b}[31mred");
        check("\x07bell\x08", "\\u{7}bell\\u{8}");
        check("del\x7f", "del\\u{7f}");
        check(
            "c1 \u{85} nel \u{9b}31m csi",
            "c1 \\u{85} nel \\u{9b}31m csi",
        );
        check(
            "\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}",
            "\\u{202a}\\u{202b}\\u{202c}\\u{202d}\\u{202e}",
        );
        check(
            "\u{2066}\u{2067}\u{2068}\u{2069}",
            "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
        );
        check("line\u{2028}para\u{2029}", "line\\u{2028}para\\u{2029}");
    }

    #[test]
    fn leaves_clean_text_borrowed() {
        assert!(matches!(escape_control("no controls"), Cow::Borrowed(_)));
    }

    #[test]
    fn no_char_survives_unescaped() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let escaped = escape_control(&c.to_string()).into_owned();
            assert!(!escaped.chars().any(is_unsafe), "{c:?} -> {escaped:?}");
        }
    }
}
