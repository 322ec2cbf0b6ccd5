//! The typed line and its echo. Once a line that the chat echoes (a message, an action, a DM) is
//! entered, the REPL erases it from the screen: the echo (`13:45 <ann> hello`), printed above
//! the next prompt when the server has taken the message, replaces it, so the message is not
//! shown twice. Commands stay on screen, since what they print does not repeat them.
//!
//! Pure: the REPL writes what these compute.

use crate::commands::{self, Action, Conversation};
use crate::sanitize;

/// Whether `line` will be echoed once sent, and so need not stay on screen.
pub fn is_echoed(line: &str) -> bool {
    matches!(
        commands::parse(line),
        Ok(Some(
            Action::Say(_)
                | Action::Me(_)
                | Action::Msg { .. }
                | Action::Conversation(Conversation::Reply(Some(_)))
        ))
    )
}

/// How many rows a prompt and the line typed after it took on a terminal `columns` wide (the
/// line wraps, and a pasted line break starts a row), as rustyline lays it out: wide (CJK)
/// characters take two columns, one that does not fit in the last column of a row starts the
/// next, and a last row filled to the edge is followed by an empty one (rustyline moves the
/// cursor there).
pub fn rows_taken(prompt: &str, line: &str, columns: usize) -> usize {
    if columns == 0 {
        return 1;
    }
    let mut rows = 0;
    let mut last_col = 0;
    for (i, part) in line.split('\n').enumerate() {
        // The prompt's columns, then the characters' (wide ones two).
        let prompt = std::iter::repeat_n(1, if i == 0 { sanitize::width(prompt) } else { 0 });
        let (mut row, mut col) = (1, 0);
        for w in prompt.chain(part.chars().map(sanitize::char_width)) {
            col += w;
            if col > columns {
                row += 1;
                col = w;
            }
        }
        rows += row;
        last_col = col;
    }
    rows + usize::from(last_col == columns)
}

/// The escape sequence that erases the `rows` rows above the cursor (which Enter left at the
/// start of the next row) and leaves the cursor at the first of them.
pub fn erase_rows(rows: usize) -> String {
    "\x1b[1A\x1b[2K".repeat(rows) + "\r"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_echoed_commands_are_not() {
        assert!(is_echoed("hello"));
        assert!(is_echoed("/me waves"));
        assert!(is_echoed("/msg bob hi"));
        assert!(is_echoed("//not a command"));
        assert!(!is_echoed("/join dev"));
        assert!(!is_echoed("/nosuch"));
        assert!(!is_echoed(""));
        assert!(!is_echoed("/quit"));
    }

    #[test]
    fn rows_follow_the_wrap() {
        let rows = |line: &str| rows_taken("#lobby> ", line, 80);
        assert_eq!(rows("hi"), 1);
        assert_eq!(rows(&"x".repeat(71)), 1);
        // Filled to the edge: the cursor waits on the next row.
        assert_eq!(rows(&"x".repeat(72)), 2);
        assert_eq!(rows(&"x".repeat(73)), 2);
        assert_eq!(rows(&format!("{}\nb", "x".repeat(72))), 2);
        assert_eq!(rows_taken("> ", "", 0), 1);
        assert_eq!(rows("one\ntwo\n"), 3);
        assert_eq!(rows(&format!("a\n{}", "x".repeat(81))), 3);
        // Wide characters: 36 of them fill the 72 columns after the prompt; one that would
        // straddle the last column starts the next row.
        assert_eq!(rows(&"漢".repeat(35)), 1);
        assert_eq!(rows(&"漢".repeat(36)), 2);
        assert_eq!(rows(&"漢".repeat(37)), 2);
        assert_eq!(rows(&format!("x{}", "漢".repeat(36))), 2);
        assert_eq!(rows(&"漢".repeat(75)), 2);
        assert_eq!(rows(&format!("x{}", "漢".repeat(76))), 3);
        assert_eq!(erase_rows(2), "\x1b[1A\x1b[2K\x1b[1A\x1b[2K\r");
    }
}
