//! The display filter: every string a server sent (nicks, rooms, message texts, topics, status
//! texts, the welcome name and motd, error messages, beacon names) passes through here before
//! it reaches the terminal, so a rogue server cannot send escape sequences (set the title, clear
//! the screen, move the cursor), nor forge lines with line breaks.
//!
//! - Control characters (C0 but tab and line breaks, DEL, C1) are shown as `<U+001B>`: visible,
//!   and harmless since nothing of the sequence reaches the terminal as a control.
//! - Bidi controls (embeddings, overrides, isolates) are shown the same way everywhere, since
//!   they can reorder what follows them on the line; in names, so are the invisible characters
//!   (zero-width spaces and joiners, the BOM, soft hyphens...) that make two names look alike.
//!   In text, invisible joiners stay: emoji sequences and Persian need them.
//! - Line breaks (LF, CR, CRLF, and the Unicode line and paragraph separators) split a text into
//!   lines, which the renderer shows as marked continuations ([`lines`]).

use std::fmt::Write;

/// A name (nick, room, server name) made safe and unambiguous for display.
pub fn name(s: &str) -> String {
    filter(s, true)
}

/// A text made safe for display, as one line: line breaks are shown as `<U+000A>` etc. (For
/// a text shown on several lines, use [`lines`].)
pub fn text(s: &str) -> String {
    filter(s, false)
}

/// The lines of a text, each made safe for display. Never empty.
pub fn lines(s: &str) -> Vec<String> {
    split_lines(s).map(text).collect()
}

/// The terminal columns `c` takes: 2 for wide (CJK) characters, 0 for combining marks and
/// controls, as rustyline counts them.
pub fn char_width(c: char) -> usize {
    unicode_width::UnicodeWidthChar::width(c).unwrap_or(0)
}

/// The terminal columns `s` takes, leaving out the SGR sequences (`ESC [ ... m`) the client
/// writes itself.
pub fn width(s: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => width += char_width(c),
        }
    }
    width
}

/// Whether a text would be shown on several lines.
pub fn is_multiline(s: &str) -> bool {
    s.chars().any(is_line_break)
}

/// A server line for `--json`: control characters (but tab) written as JSON `\u` escapes.
/// JSON allows raw DEL and C1 controls (CSI is U+009B) inside strings, and a rogue server may
/// send raw C0 too; escaped, a string holds the same value and the terminal sees no control.
/// Lines without any (every line a lanchat server sends) are returned as they are.
pub fn json_line(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A text split at its line breaks (CRLF counts once).
fn split_lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.char_indices().find(|&(_, c)| is_line_break(c)) {
            None => {
                rest = None;
                Some(s)
            }
            Some((at, c)) => {
                let mut next = at + c.len_utf8();
                if c == '\r' && s[next..].starts_with('\n') {
                    next += 1;
                }
                rest = Some(&s[next..]);
                Some(&s[..at])
            }
        }
    })
}

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

fn filter(s: &str, is_name: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\t' && !is_name {
            out.push(' ');
        } else if c.is_control() || is_bidi_control(c) || (is_name && is_invisible(c)) {
            let _ = write!(out, "<U+{:04X}>", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Embeddings, overrides and isolates, and the marks (which are invisible).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// Characters that show as nothing (or next to nothing) and would make two names look alike.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200d}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206a}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_visible_text() {
        let title = "\x1b]0;pwned\x07";
        assert_eq!(text(title), "<U+001B>]0;pwned<U+0007>");
        assert_eq!(text("\x1b[2J\x1b[H"), "<U+001B>[2J<U+001B>[H");
        // C1 controls: CSI (0x9b) and OSC (0x9d) act like ESC [ and ESC ] on some terminals.
        assert_eq!(text("\u{9b}2J\u{9d}0;x"), "<U+009B>2J<U+009D>0;x");
        assert_eq!(text("del\x7f"), "del<U+007F>");
        assert_eq!(name("b\x1bob"), "b<U+001B>ob");
        for s in [title, "\x1b[2J", "\u{9b}31m", "a\rb", "a\nb"] {
            let out = text(s) + &name(s);
            assert!(!out.chars().any(char::is_control), "{out:?}");
        }
    }

    #[test]
    fn bidi_controls_show_everywhere_and_invisibles_in_names() {
        assert_eq!(name("bob\u{202e}gnp.exe"), "bob<U+202E>gnp.exe");
        assert_eq!(text("x\u{202e}y\u{2066}z"), "x<U+202E>y<U+2066>z");
        assert_eq!(name("a\u{200b}nn"), "a<U+200B>nn");
        assert_eq!(name("ann\u{feff}"), "ann<U+FEFF>");
        // In text, joiners stay (emoji sequences); names show them.
        let family = "\u{1f468}\u{200d}\u{1f469}";
        assert_eq!(text(family), family);
        assert_eq!(name("x\u{200d}"), "x<U+200D>");
        assert_eq!(text("tab\there"), "tab here");
        assert_eq!(name("Ünï"), "Ünï");
    }

    #[test]
    fn json_lines_keep_their_value_without_controls() {
        let plain = r#"{"type":"message","text":"caf\u00e9 \u001b ok"}"#;
        assert!(matches!(json_line(plain), std::borrow::Cow::Borrowed(_)));
        let raw = "{\"type\":\"message\",\"text\":\"a\u{9b}2Jb\u{7f}\"}";
        let escaped = json_line(raw);
        assert_eq!(escaped, r#"{"type":"message","text":"a\u009b2Jb\u007f"}"#);
        let a: serde_json::Value = serde_json::from_str(raw).unwrap();
        let b: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(a, b);
        assert_eq!(json_line("x\x1b]0;t\x07"), "x\\u001b]0;t\\u0007");
    }

    #[test]
    fn lines_split_at_every_line_break() {
        assert_eq!(lines("one"), ["one"]);
        assert_eq!(lines(""), [""]);
        assert_eq!(lines("a\nb"), ["a", "b"]);
        assert_eq!(lines("a\r\nb\rc\u{2028}d"), ["a", "b", "c", "d"]);
        assert_eq!(lines("a\n"), ["a", ""]);
        assert_eq!(lines("a\n\x1b[2Jb"), ["a", "<U+001B>[2Jb"]);
        assert!(is_multiline("a\rb"));
        assert!(!is_multiline("ab"));
    }
}
