//! A message over the server's `max_text` bytes is split into messages that fit, rather than
//! sent whole to be refused: at line breaks when it has them, else at the last space that fits,
//! else at a character boundary. Pure; the session sends the parts and says it did.

use lanchat_protocol::Command;

/// A message (`say`, `dm`) whose text is over `max` bytes, as messages that fit (an action stays
/// an action in each); `None` for anything else.
pub fn over_limit(cmd: &Command, max: usize) -> Option<Vec<Command>> {
    let text = match cmd {
        Command::Say { text, .. } | Command::Dm { text, .. } => text,
        _ => return None,
    };
    if text.len() <= max {
        return None;
    }
    let (prefix, body) = match text.strip_prefix("/me ") {
        Some(action) => ("/me ", action),
        None => ("", text.as_str()),
    };
    let parts = split_text(body, max.saturating_sub(prefix.len()));
    Some(
        parts
            .into_iter()
            .map(|part| {
                let text = format!("{prefix}{part}");
                match cmd {
                    Command::Say { room, .. } => Command::Say {
                        room: room.clone(),
                        text,
                    },
                    Command::Dm { to, .. } => Command::Dm {
                        to: to.clone(),
                        text,
                    },
                    _ => unreachable!("only messages are split"),
                }
            })
            .collect(),
    )
}

/// `text` in parts of at most `max` bytes (`max` at least 4, the longest character), each
/// non-empty, in order; joined with their separators they give `text` back.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let max = max.max(4);
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let window = &rest[..floor_char_boundary(rest, max)];
        // The separator after the part is dropped (a line break, or a space): it is where the
        // reader sees the part end anyway.
        let cut = window
            .rfind('\n')
            .or_else(|| window.rfind(' '))
            .filter(|&at| at > 0);
        let (part, next) = match cut {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (window, &rest[window.len()..]),
        };
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        rest = next;
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

/// The largest index at most `i` that is a character boundary of `s`.
fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_one_part() {
        assert_eq!(split_text("hello", 4096), ["hello"]);
        assert_eq!(split_text("", 4096), [""]);
    }

    #[test]
    fn a_paste_is_split_at_line_breaks_within_the_limit() {
        let line = "x".repeat(99);
        let paste = vec![line.as_str(); 50].join("\n"); // 50 lines, 4,999 bytes
        let parts = split_text(&paste, 4096);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= 4096));
        assert_eq!(parts[0].lines().count(), 40);
        assert_eq!(parts.join("\n"), paste);
    }

    #[test]
    fn long_lines_are_split_at_spaces_then_anywhere() {
        let words = "word ".repeat(2000);
        let parts = split_text(words.trim_end(), 4096);
        assert!(parts.iter().all(|p| p.len() <= 4096 && !p.starts_with(' ')));
        assert_eq!(parts.join(" "), words.trim_end());
        let solid = "é".repeat(3000); // 6,000 bytes, no space
        let parts = split_text(&solid, 4096);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= 4096));
        assert_eq!(parts.concat(), solid);
    }

    #[test]
    fn only_messages_are_split_and_actions_stay_actions() {
        let say = |text: String| Command::Say {
            room: "r".into(),
            text,
        };
        assert_eq!(over_limit(&say("short".into()), 4096), None);
        let parts = over_limit(&say(format!("/me {}", "waves ".repeat(1000))), 4096).unwrap();
        assert_eq!(parts.len(), 2);
        for part in &parts {
            let Command::Say { text, .. } = part else {
                panic!("{part:?}")
            };
            assert!(text.starts_with("/me ") && text.len() <= 4096, "{text:?}");
        }
        let dm = Command::Dm {
            to: "bob".into(),
            text: "x".repeat(5000),
        };
        assert_eq!(over_limit(&dm, 4096).unwrap().len(), 2);
        let topic = Command::Topic {
            room: "r".into(),
            topic: Some("x".repeat(5000)),
        };
        assert_eq!(over_limit(&topic, 4096), None);
    }
}
