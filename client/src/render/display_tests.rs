//! The display rules of issue 16: multi-line texts, server strings filtered, marks and the bell
//! without colour, dates, nick colours, counts and reasons.

use super::tests::{msg, plain, TS};
use super::*;
use lanchat_protocol::{NickChange, QuitEvent, TopicChange};

#[test]
fn later_lines_of_a_message_are_marked_continuations() {
    let v = plain("ann");
    let forged = "brb\n06:38 -- cho is now known as admin\r<dan> hi\r\n";
    assert_eq!(
        v.message(&msg("bob", forged)).text,
        "13:45 <bob> brb\n\
         \x20         | 06:38 -- cho is now known as admin\n\
         \x20         | <dan> hi\n\
         \x20         | "
    );
    // Every later line starts with blanks then the marker, whatever the text.
    for line in v.message(&msg("bob", forged)).text.lines().skip(1) {
        assert!(line.trim_start().starts_with('|'), "{line:?}");
        assert!(line.starts_with(' '), "{line:?}");
    }
    let topic = ServerFrame::Topic(TopicChange {
        room: "lobby".into(),
        topic: "a\n12:00 <ann> b".into(),
        by: "bob".into(),
    });
    assert_eq!(
        v.event(&topic).unwrap().text,
        "13:45 -- bob set the topic of #lobby: a\n    | 12:00 <ann> b"
    );
    let away = ServerFrame::Presence(Member {
        nick: "bob".into(),
        status: Status::Away,
        text: Some("x\ny".into()),
        op: false,
    });
    assert_eq!(
        v.event(&away).unwrap().text,
        "13:45 -- bob is away: x\n    | y"
    );
    assert_eq!(v.info("a\nb").text, "13:45 -- a\n    | b");
    // A wide (CJK) nick takes two columns a character: the later lines still start under the
    // first line's text.
    let text = v.message(&msg("小明", "你好\n世界")).text;
    assert_eq!(text, "13:45 <小明> 你好\n           | 世界");
    let (first, second) = text.split_once('\n').unwrap();
    let column = |row: &str, at: &str| crate::sanitize::width(&row[..row.find(at).unwrap()]);
    assert_eq!(column(first, "你好"), column(second, "世界"));
    // In colour, the continuation of a mention is highlighted too, the marker dimmed.
    let c = View {
        color: true,
        ..plain("ann")
    };
    let text = c.message(&msg("bob", "x\nann")).text;
    assert!(
        text.contains(&format!("{DIM}|{RESET} {MENTION}ann")),
        "{text:?}"
    );
}

#[test]
fn server_strings_reach_the_terminal_filtered() {
    let v = View {
        color: true,
        ..plain("ann")
    };
    let evil = ServerFrame::Nick(NickChange {
        old: "bob\x1b]0;pwned\x07".into(),
        new: "adm\u{202e}nim".into(),
    });
    let text = v.event(&evil).unwrap().text;
    assert!(
        text.contains("bob<U+001B>]0;pwned<U+0007> is now known as adm<U+202E>nim"),
        "{text:?}"
    );
    let topic = ServerFrame::Topic(TopicChange {
        room: "lob\u{9b}by".into(),
        topic: "\x1b[2J\x1b[H\u{9d}0;x\u{9c}".into(),
        by: "b\u{200b}ob".into(),
    });
    let error = ServerFrame::Error(lanchat_protocol::ErrorFrame {
        re: None,
        code: lanchat_protocol::ErrorCode::BadFrame,
        message: "\x1b[31mno\x1b[0m".into(),
        retry_after_ms: None,
    });
    let dm = Direct {
        id: "i".into(),
        ts: TS,
        from: "e\x1bve".into(),
        to: "ann".into(),
        text: "\x1b]2;t\x07".into(),
    };
    let lines = [
        v.event(&topic).unwrap().text,
        v.event(&error).unwrap().text,
        v.direct(&dm).text,
        v.message(&msg("b\u{202e}ob", "\u{202e}txt.exe")).text,
        v.members(
            "l\x1bobby",
            &[Member {
                nick: "\x07".into(),
                status: Status::Online,
                text: None,
                op: false,
            }],
        )
        .text,
        v.info("welcome to \x1b[2Joffice").text,
    ];
    for line in &lines {
        // Only this module's own colour sequences remain.
        let own_styles_removed = line.split('\x1b').skip(1).all(|after| {
            after.starts_with('[')
                && after
                    .split_once('m')
                    .is_some_and(|(p, _)| p[1..].chars().all(|c| c.is_ascii_digit() || c == ';'))
        });
        assert!(own_styles_removed, "{line:?}");
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\x1b'),
            "{line:?}"
        );
        assert!(!line.contains('\u{202e}'), "{line:?}");
    }
    assert!(lines[0].contains("b<U+200B>ob"), "{:?}", lines[0]);
    assert!(lines[3].contains("<U+202E>txt.exe"), "{:?}", lines[3]);
}

#[test]
fn without_colour_mentions_and_dms_are_marked_and_ring() {
    let v = View {
        mark: true,
        ..plain("ann")
    };
    let line = v.message(&msg("bob", "hey ann"));
    assert_eq!(line.text, "13:45 >> <bob> hey ann");
    assert!(line.bell);
    let line = v.message(&msg("bob", "hey all"));
    assert_eq!(line.text, "13:45 <bob> hey all");
    assert!(!line.bell);
    let d = Direct {
        id: "i".into(),
        ts: TS,
        from: "bob".into(),
        to: "ann".into(),
        text: "psst".into(),
    };
    let line = v.direct(&d);
    assert_eq!(line.text, "13:45 >> *bob* psst");
    assert!(line.bell);
    let sent = Direct {
        from: "ann".into(),
        to: "bob".into(),
        ..d
    };
    assert_eq!(v.direct(&sent).text, "13:45 -> *bob* psst");
    let quiet = View { bell: false, ..v };
    assert!(!quiet.message(&msg("bob", "hey ann")).bell);
}

#[test]
fn lines_not_from_today_carry_their_date() {
    let v = View {
        now_ms: TS + 3 * 86_400_000,
        ..plain("ann")
    };
    assert_eq!(
        v.message(&msg("bob", "old\nnews")).text,
        format!("2024-01-02 13:45 <bob> old\n{}| news", " ".repeat(21))
    );
    // Today by the local clock, not by UTC.
    let v = View {
        now_ms: TS - 14 * 3_600_000,
        utc_offset: |_| -14 * 3600,
        ..plain("ann")
    };
    assert_eq!(v.message(&msg("bob", "x")).text, "23:45 <bob> x");
    let v = View {
        utc_offset: |_| 11 * 3600,
        now_ms: TS,
        ..plain("ann")
    };
    assert_eq!(v.message(&msg("bob", "x")).text, "00:45 <bob> x");
    let v = View {
        now_ms: TS - 86_400_000,
        ..plain("ann")
    };
    assert!(v
        .message(&msg("bob", "x"))
        .text
        .starts_with("2024-01-02 13:45"));
}

#[test]
fn nick_colours_are_spread_and_own_nick_stands_out() {
    let names = [
        "ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "joe",
    ];
    let colours: Vec<u8> = names.iter().map(|n| nick_colour(n)).collect();
    let distinct: std::collections::HashSet<u8> = colours.iter().copied().collect();
    assert!(distinct.len() >= 7, "{colours:?}");
    let three: std::collections::HashSet<u8> = ["ann", "bob", "dan"]
        .iter()
        .map(|n| nick_colour(n))
        .collect();
    assert_eq!(three.len(), 3);
    // No dark blue (4, 18, 19), no black or greys, nothing else unreadable on one background.
    for c in NICK_COLOURS {
        assert!(
            !matches!(c, 0 | 4 | 16..=21 | 52..=57 | 226..=231 | 232..=255),
            "{c}"
        );
    }
    let v = View {
        color: true,
        ..plain("ann")
    };
    let own = v.message(&msg("Ann", "mine")).text;
    assert!(
        own.contains(&format!("{OWN}\x1b[38;5;{}mAnn", nick_colour("ann"))),
        "{own:?}"
    );
    assert!(!v.message(&msg("bob", "x")).text.contains(OWN));
}

#[test]
fn counts_and_reasons_read_as_english() {
    let v = plain("ann");
    let quit = |reason: &str| {
        ServerFrame::Quit(QuitEvent {
            nick: "bob".into(),
            reason: reason.into(),
        })
    };
    assert_eq!(v.event(&quit("quit")).unwrap().text, "13:45 -- bob quit");
    assert_eq!(v.event(&quit("")).unwrap().text, "13:45 -- bob quit");
    assert_eq!(
        v.event(&quit("lunch")).unwrap().text,
        "13:45 -- bob quit (lunch)"
    );
    let one = [RoomInfo {
        name: "dev".into(),
        members: 1,
        topic: String::new(),
    }];
    assert_eq!(v.rooms(&one)[0].text, "13:45 -- #dev (1 member)");
    // The goodbye is told once, by the notice about the lost connection (or the exit).
    let bye = ServerFrame::Bye(lanchat_protocol::Bye {
        re: None,
        reason: lanchat_protocol::ByeReason::ShuttingDown,
        message: "restarting".into(),
    });
    assert_eq!(v.event(&bye), None);
}

#[test]
fn highlight_words_and_the_timestamp_format_come_from_the_config() {
    let look = Look {
        highlight: vec!["release".into()],
        timestamp: Some("%H:%M:%S".into()),
    };
    let v = View {
        mark: true,
        look: &look,
        ..plain("ann")
    };
    let line = v.message(&msg("bob", "the Release is out"));
    assert_eq!(line.text, "13:45:10 >> <bob> the Release is out");
    assert!(line.bell);
    assert!(!v.message(&msg("bob", "releases")).bell);
    assert!(v.mentioned("hi ann"));
}
