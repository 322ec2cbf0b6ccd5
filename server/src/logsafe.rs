//! Client- and network-supplied strings made safe for one log field.
//!
//! A string a peer chose (a `hello`'s `client`, a nick, a file name found on disk) printed raw can
//! forge log lines (`\n`), recolour or clear the operator's terminal (`ESC [`), reorder what is
//! shown (bidi overrides) or hide text (zero-width characters). [`field`] renders it so that
//! every such character is visible as an escape, the result stays short, and it reads as one
//! logfmt value: `%logsafe::field(&client)` in a tracing macro.

use std::fmt::{self, Display, Write};

/// Bytes of rendered text (escapes included) a field shows at most before its ellipsis.
pub const MAX_FIELD_BYTES: usize = 256;

/// A string rendered for a log field; see [`field`].
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    text: &'a str,
    max_bytes: usize,
}

/// Render `text` for a log field, at most [`MAX_FIELD_BYTES`] bytes of it.
///
/// - Control characters (Unicode Cc: C0, DEL, C1), line and paragraph separators (U+2028,
///   U+2029) and invisible format characters (Unicode Cf: bidi embeddings, overrides, isolates
///   and marks, zero-width spaces and joiners, the BOM, tag characters...) are escaped as
///   `\n`, `\r`, `\t` or `\u{1b}`; a backslash is doubled, so no escape can be faked.
/// - A value that is empty or holds a space, `=` or `"` is quoted (`"a b"`, inner `"` as `\"`),
///   so it cannot pass for further `key=value` fields of the same line.
/// - Past the cap the text stops at a character boundary and ends with `…`.
pub fn field(text: &str) -> Field<'_> {
    field_capped(text, MAX_FIELD_BYTES)
}

/// [`field`] with another cap, in bytes of rendered text (the quotes and the ellipsis aside).
pub fn field_capped(text: &str, max_bytes: usize) -> Field<'_> {
    Field { text, max_bytes }
}

/// Whether `c` must not reach a log raw: it is invisible, moves the cursor or reorders text.
fn is_hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_format(c)
}

/// Unicode General_Category Cf (format characters), Unicode 15.1.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{AD}'
        | '\u{600}'..='\u{605}'
        | '\u{61C}'
        | '\u{6DD}'
        | '\u{70F}'
        | '\u{890}'..='\u{891}'
        | '\u{8E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

fn needs_quotes(text: &str) -> bool {
    text.is_empty() || text.contains([' ', '=', '"'])
}

/// Writes into a fixed buffer: one character's rendering is at most `\u{10ffff}` (10 bytes).
struct Piece {
    buf: [u8; 12],
    len: usize,
}

impl Write for Piece {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Piece {
    fn of(c: char, quoted: bool) -> Piece {
        let mut p = Piece {
            buf: [0; 12],
            len: 0,
        };
        // Cannot fail: the longest rendering fits in the buffer.
        let _ = match c {
            '\n' => p.write_str("\\n"),
            '\r' => p.write_str("\\r"),
            '\t' => p.write_str("\\t"),
            '\\' => p.write_str("\\\\"),
            '"' if quoted => p.write_str("\\\""),
            c if is_hidden(c) => write!(p, "\\u{{{:x}}}", c as u32),
            c => p.write_char(c),
        };
        p
    }

    fn as_str(&self) -> &str {
        // Built only from whole `&str`s.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = needs_quotes(self.text);
        if quoted {
            f.write_char('"')?;
        }
        let mut written = 0;
        for c in self.text.chars() {
            let piece = Piece::of(c, quoted);
            if written + piece.len > self.max_bytes {
                f.write_char('…')?;
                break;
            }
            f.write_str(piece.as_str())?;
            written += piece.len;
        }
        if quoted {
            f.write_char('"')?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(s: &str) -> String {
        field(s).to_string()
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(show("lanchat-py/1.0"), "lanchat-py/1.0");
        assert_eq!(show("zoë/ünï/日本語/😀"), "zoë/ünï/日本語/😀");
    }

    #[test]
    fn a_newline_cannot_start_a_forged_line() {
        let forged = "x\n2026-01-01T00:00:00Z  INFO lanchat_server: registered nick=admin";
        let out = show(forged);
        assert!(!out.contains('\n'), "{out}");
        assert!(out.starts_with("\"x\\n2026"), "{out}");
        assert_eq!(show("a\r\nb\tc"), "a\\r\\nb\\tc");
    }

    #[test]
    fn every_control_character_is_escaped() {
        assert_eq!(show("\u{1b}[2J\u{1b}[31mred"), "\\u{1b}[2J\\u{1b}[31mred");
        assert_eq!(show("\0\u{7f}\u{85}\u{9b}"), "\\u{0}\\u{7f}\\u{85}\\u{9b}");
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let out = show(&c.to_string());
            assert!(out.chars().all(|o| !o.is_control()), "{c:?}: {out}");
            assert!(out.starts_with('\\'), "{c:?}: {out}");
        }
    }

    #[test]
    fn bidi_and_invisible_characters_are_escaped() {
        // "admin" shown reversed by a right-to-left override, then isolates and marks.
        assert_eq!(show("\u{202e}nimda"), "\\u{202e}nimda");
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            assert_eq!(show(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
        }
        assert_eq!(
            show("a\u{200b}b\u{200d}c\u{feff}d\u{ad}e\u{2028}f\u{e0041}"),
            "a\\u{200b}b\\u{200d}c\\u{feff}d\\u{ad}e\\u{2028}f\\u{e0041}"
        );
        assert_eq!(
            show("\u{200e}\u{200f}\u{61c}"),
            "\\u{200e}\\u{200f}\\u{61c}"
        );
    }

    #[test]
    fn a_backslash_is_doubled_so_an_escape_cannot_be_faked() {
        assert_eq!(show("a\\nb"), "a\\\\nb");
        assert_ne!(show("a\\nb"), show("a\nb"));
    }

    #[test]
    fn a_value_that_could_pass_for_more_fields_is_quoted() {
        assert_eq!(show("x peer=10.0.0.1"), "\"x peer=10.0.0.1\"");
        assert_eq!(show("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(show("a=b"), "\"a=b\"");
        assert_eq!(show(""), "\"\"");
        assert_eq!(show("no-quotes"), "no-quotes");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis_at_a_character_boundary() {
        assert_eq!(field_capped("abcdef", 6).to_string(), "abcdef");
        assert_eq!(field_capped("abcdefg", 6).to_string(), "abcdef…");
        assert_eq!(field_capped("ab😀", 5).to_string(), "ab…");
        // An escape is never cut in half.
        assert_eq!(field_capped("ab\u{1b}", 7).to_string(), "ab…");
        assert_eq!(field_capped("ab\u{1b}", 8).to_string(), "ab\\u{1b}");
        let huge = "\u{202e}".repeat(100_000);
        let out = show(&huge);
        assert!(
            out.len() <= MAX_FIELD_BYTES + '…'.len_utf8(),
            "{}",
            out.len()
        );
        assert!(out.ends_with('…'));
        let out = show(&"x ".repeat(1000));
        assert!(out.starts_with('"') && out.ends_with("…\""), "{out}");
    }

    #[test]
    fn it_formats_inside_tracing_fields() {
        // The macros take it with `%`, which uses Display.
        let client = "evil\nINFO forged";
        let line = format!("client={}", field(client));
        assert_eq!(line, "client=\"evil\\nINFO forged\"");
    }
}
