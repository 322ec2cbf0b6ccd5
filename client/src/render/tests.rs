//! The pure pieces of rendering: lines, names, colours, counts.

use super::*;
use lanchat_protocol::{
    InviteEvent, LeaveEvent, ModeEvent, NickChange, QuitEvent, RoomNick, TopicChange,
};

// 2024-01-02 13:45:10 UTC
pub(super) const TS: u64 = 1_704_203_110_000;

pub(super) fn plain(me: &str) -> View<'_> {
    View {
        me,
        color: false,
        bell: true,
        mark: false,
        show_room: false,
        now_ms: TS,
        utc_offset: |_| 0,
        look: &PLAIN_LOOK,
    }
}

pub(super) fn msg(from: &str, text: &str) -> Message {
    Message {
        id: "0190-x".into(),
        ts: TS,
        room: "lobby".into(),
        from: from.into(),
        text: text.into(),
    }
}

#[test]
fn plain_message_lines() {
    let v = plain("ann");
    assert_eq!(v.message(&msg("bob", "hi")).text, "13:45 <bob> hi");
    assert_eq!(
        v.message(&msg("bob", "/me waves")).text,
        "13:45 * bob waves"
    );
    assert_eq!(v.message(&msg("ann", "mine")).text, "13:45 <ann> mine");
    let v = View {
        show_room: true,
        ..plain("ann")
    };
    assert_eq!(v.message(&msg("bob", "hi")).text, "13:45 #lobby <bob> hi");
}

#[test]
fn local_time_uses_the_offset() {
    let v = View {
        utc_offset: |_| -5 * 3600 - 1800,
        ..plain("ann")
    };
    assert_eq!(v.message(&msg("bob", "x")).text, "08:15 <bob> x");
    let v = View {
        utc_offset: |_| 11 * 3600,
        ..plain("ann")
    };
    assert_eq!(v.message(&msg("bob", "x")).text, "00:45 <bob> x");
}

#[test]
fn plain_output_has_no_escapes_but_still_rings() {
    let v = plain("ann");
    let line = v.message(&msg("bob", "hey ann!"));
    assert!(!line.text.contains('\x1b'));
    assert!(line.bell);
    let d = Direct {
        id: "i".into(),
        ts: TS,
        from: "bob".into(),
        to: "ann".into(),
        text: "psst".into(),
    };
    assert_eq!(v.direct(&d).text, "13:45 *bob* psst");
    let sent = Direct {
        from: "ann".into(),
        to: "bob".into(),
        ..d
    };
    assert_eq!(v.direct(&sent).text, "13:45 -> *bob* psst");
}

#[test]
fn colour_highlights_mentions_and_dms_and_rings() {
    let v = View {
        color: true,
        ..plain("Ann")
    };
    let line = v.message(&msg("bob", "hey ann!"));
    assert!(line.text.contains(MENTION), "{:?}", line.text);
    assert!(line.bell);
    let quiet = View {
        bell: false,
        ..v.clone()
    };
    assert!(!quiet.message(&msg("bob", "hey ann!")).bell);
    let line = v.message(&msg("bob", "hey annie"));
    assert!(!line.text.contains(MENTION));
    assert!(!line.bell);
    // Own messages never ring.
    assert!(!v.message(&msg("ann", "I am ann")).bell);
    let d = Direct {
        id: "i".into(),
        ts: TS,
        from: "bob".into(),
        to: "ann".into(),
        text: "psst".into(),
    };
    let line = v.direct(&d);
    assert!(line.text.contains(DIRECT) && line.bell);
    // The nick is coloured with its own stable colour.
    let colour = format!("\x1b[38;5;{}mbob", nick_colour("bob"));
    assert!(v.message(&msg("bob", "x")).text.contains(&colour));
}

#[test]
fn mention_rules() {
    assert!(mentions("ann: hi", "ann"));
    assert!(mentions("hi ANN", "ann"));
    assert!(mentions("(ann)", "ann"));
    assert!(mentions("annie and ann", "ann"));
    assert!(!mentions("annie", "ann"));
    assert!(!mentions("joann", "ann"));
    assert!(!mentions("ann_2 here", "ann"));
    assert!(mentions("Ünï says hi", "ünï"));
    assert!(!mentions("anything", ""));
}

#[test]
fn nick_colours_are_stable_and_case_blind() {
    assert_eq!(nick_colour("bob"), nick_colour("BOB"));
    assert_eq!(nick_colour("bob"), nick_colour("bob"));
    let distinct: std::collections::HashSet<u8> = ["ann", "bob", "cat", "dan", "eve", "fay", "gus"]
        .iter()
        .map(|n| nick_colour(n))
        .collect();
    assert!(distinct.len() > 2);
}

#[test]
fn notices_are_dimmed() {
    let v = plain("ann");
    let join = ServerFrame::Join(RoomNick {
        room: "lobby".into(),
        nick: "bob".into(),
    });
    assert_eq!(v.event(&join).unwrap().text, "13:45 -- bob joined #lobby");
    let quit = ServerFrame::Quit(QuitEvent {
        nick: "bob".into(),
        reason: "connection lost".into(),
    });
    assert_eq!(
        v.event(&quit).unwrap().text,
        "13:45 -- bob quit (connection lost)"
    );
    let nick = ServerFrame::Nick(NickChange {
        old: "bob".into(),
        new: "rob".into(),
    });
    assert_eq!(
        v.event(&nick).unwrap().text,
        "13:45 -- bob is now known as rob"
    );
    let away = ServerFrame::Presence(Member {
        nick: "bob".into(),
        status: Status::Away,
        text: Some("lunch".into()),
        op: false,
    });
    assert_eq!(v.event(&away).unwrap().text, "13:45 -- bob is away: lunch");
    let topic = ServerFrame::Topic(TopicChange {
        room: "lobby".into(),
        topic: "t".into(),
        by: "bob".into(),
    });
    assert_eq!(
        v.event(&topic).unwrap().text,
        "13:45 -- bob set the topic of #lobby: t"
    );
    assert_eq!(v.event(&ServerFrame::Ping {}), None);
    let dim = View {
        color: true,
        ..plain("ann")
    };
    assert!(dim.event(&join).unwrap().text.contains(DIM));
}

#[test]
fn private_room_events() {
    let v = plain("ann");
    let kicked = ServerFrame::Leave(LeaveEvent {
        room: "dev".into(),
        nick: "bob".into(),
        kicked_by: Some("ann".into()),
        reason: Some("spam".into()),
    });
    assert_eq!(
        v.event(&kicked).unwrap().text,
        "13:45 -- bob was kicked from #dev by ann (spam)"
    );
    let mode = ServerFrame::Mode(ModeEvent {
        room: "dev".into(),
        by: "ann".into(),
        invite_only: true,
        has_key: true,
        topic_lock: true,
    });
    assert_eq!(
        v.event(&mode).unwrap().text,
        "13:45 -- ann set the modes of #dev: invite-only, key, topic locked"
    );
    let invite = ServerFrame::Invite(InviteEvent {
        room: "dev".into(),
        by: "bob".into(),
    });
    assert_eq!(
        v.event(&invite).unwrap().text,
        "13:45 -- bob invited you to #dev: /join dev"
    );
    assert_eq!(modes(false, false, false), "public");
    let ops = [Member {
        nick: "ann".into(),
        status: Status::Online,
        text: None,
        op: true,
    }];
    assert_eq!(v.members("dev", &ops).text, "13:45 -- #dev: 1 here: @ann");
}

#[test]
fn lists() {
    let v = plain("ann");
    let members = [
        Member {
            nick: "ann".into(),
            status: Status::Online,
            text: None,
            op: false,
        },
        Member {
            nick: "bob".into(),
            status: Status::Away,
            text: Some("lunch".into()),
            op: false,
        },
    ];
    assert_eq!(
        v.members("lobby", &members).text,
        "13:45 -- #lobby: 2 here: ann, bob (away)"
    );
    let rooms = [RoomInfo {
        name: "dev".into(),
        members: 3,
        topic: "rust".into(),
    }];
    assert_eq!(v.rooms(&rooms)[0].text, "13:45 -- #dev (3 members) - rust");
    assert_eq!(
        v.listed(&rooms, &[true])[0].text,
        "13:45 -- * #dev (3 members) - rust"
    );
}
