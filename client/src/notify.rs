//! Desktop notifications for mentions and direct messages through the terminal's own sequences
//! (`notify` in the config; off by default): OSC 777 (`ESC ] 777 ; notify ; TITLE ; BODY BEL`)
//! and/or OSC 9 (`ESC ] 9 ; TEXT BEL`). The terminal turns them into a desktop notification;
//! a terminal that knows neither ignores them.
//!
//! They are sent whether or not the terminal has focus: focus reporting (`CSI ? 1004 h`) sends
//! `CSI I` / `CSI O` as input, which rustyline would read as keys typed at the prompt.
//!
//! Inside tmux (`$TMUX` set) the sequences are wrapped for its passthrough (`ESC P tmux; ...
//! ESC \`, every ESC inside doubled), which tmux hands to the outer terminal when its
//! `allow-passthrough` option is on (tmux 3.3 and later) and drops silently otherwise: tmux
//! itself does nothing with OSC 777 or 9.
//!
//! The title and body carry server strings (nicks, rooms, texts) inside a control sequence, so
//! they pass the display filter and lose every control character left: nothing from the server
//! can end the sequence early and inject its own.

use crate::config::Notify;
use crate::sanitize;

/// At most this many characters of the message in a notification.
const MAX_BODY: usize = 200;

/// The notification sequences for `title` and `body`, as `notify` chooses (empty when off).
pub fn sequence(notify: Notify, title: &str, body: &str) -> String {
    // ';' separates OSC 777's fields: none in the title (the body is the last field).
    let title = clean(title, MAX_BODY).replace(';', ",");
    let body = clean(body, MAX_BODY);
    let osc777 = format!("\x1b]777;notify;{title};{body}\x07");
    // The title first: a text starting with digits and ';' would be a ConEmu OSC 9 command.
    let osc9 = format!("\x1b]9;{title}: {body}\x07");
    match notify {
        Notify::Off => String::new(),
        Notify::Osc777 => osc777,
        Notify::Osc9 => osc9,
        Notify::Both => osc777 + &osc9,
    }
}

/// `seq` wrapped for tmux's passthrough when `tmux`: `ESC P tmux; seq ESC \`, with each ESC of
/// `seq` doubled. Empty stays empty.
pub fn passthrough(seq: String, tmux: bool) -> String {
    if !tmux || seq.is_empty() {
        return seq;
    }
    format!("\x1bPtmux;{}\x1b\\", seq.replace('\x1b', "\x1b\x1b"))
}

/// Whether this process runs inside tmux.
pub fn in_tmux() -> bool {
    std::env::var_os("TMUX").is_some_and(|v| !v.is_empty())
}

/// A server string as one printable line of at most `max` characters.
fn clean(text: &str, max: usize) -> String {
    let one_line = sanitize::lines(text).join(" ");
    let mut out: String = one_line
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    if one_line.chars().count() > max {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osc_777_and_9() {
        assert_eq!(
            sequence(Notify::Osc777, "bob in #lobby", "ann: hi"),
            "\x1b]777;notify;bob in #lobby;ann: hi\x07"
        );
        assert_eq!(sequence(Notify::Osc9, "bob", "hi"), "\x1b]9;bob: hi\x07");
        assert_eq!(
            sequence(Notify::Both, "t", "b"),
            "\x1b]777;notify;t;b\x07\x1b]9;t: b\x07"
        );
        assert_eq!(sequence(Notify::Off, "t", "b"), "");
    }

    #[test]
    fn server_strings_cannot_end_the_sequence() {
        let evil = "x\x07\x1b]0;pwned\x1b\\\u{9c}\u{9d}\r\ny\u{202e}";
        let seq = sequence(Notify::Both, &format!("b;o{evil}"), evil);
        // Exactly the sequences' own ESC and BEL bytes, and no other control character.
        assert_eq!(seq.matches('\x1b').count(), 2, "{seq:?}");
        assert_eq!(seq.matches('\x07').count(), 2, "{seq:?}");
        assert!(!seq
            .chars()
            .any(|c| c.is_control() && c != '\x1b' && c != '\x07'));
        assert!(seq.starts_with("\x1b]777;notify;b,o"), "{seq:?}");
        let long = sequence(Notify::Osc9, "t", &"a".repeat(1000));
        assert!(long.len() < 220 && long.ends_with("...\x07"));
    }

    #[test]
    fn inside_tmux_the_sequences_go_through_its_passthrough() {
        let seq = sequence(Notify::Both, "t", "b");
        assert_eq!(
            passthrough(seq.clone(), true),
            "\x1bPtmux;\x1b\x1b]777;notify;t;b\x07\x1b\x1b]9;t: b\x07\x1b\\"
        );
        assert_eq!(passthrough(seq.clone(), false), seq);
        assert_eq!(passthrough(String::new(), true), "");
    }
}
