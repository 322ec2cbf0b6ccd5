//! The model's rules, one reply or event at a time.

use super::*;
use lanchat_protocol::{
    Bye, ByeReason, ErrorCode, LeaveEvent, Limits, NickChange, QuitEvent, Reply, RoomNick,
    TopicChange,
};

pub(super) fn welcome(nick: &str, rooms: &[&str]) -> Welcome {
    Welcome {
        re: None,
        protocol: 1,
        server: "lanchat-server/0.1.0".into(),
        name: "office".into(),
        session: "s1".into(),
        nick: nick.into(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        motd: "hello\n\n  \nbe nice".into(),
        limits: Limits::default(),
        cluster: None,
    }
}

pub(super) fn ok(data: ReplyData) -> ServerFrame {
    ServerFrame::Reply(Reply { re: None, data })
}

pub(super) fn error(code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame::Error(ErrorFrame {
        code,
        message: message.into(),
        re: None,
        retry_after_ms: None,
    })
}

pub(super) fn member(nick: &str) -> Member {
    Member {
        nick: nick.into(),
        status: Status::Online,
        text: None,
        op: false,
    }
}

pub(super) fn msg(id: &str, room: &str, from: &str) -> Message {
    Message {
        id: id.into(),
        ts: 1_704_203_110_000,
        room: room.into(),
        from: from.into(),
        text: "hi".into(),
    }
}

pub(super) fn join_reply(room: &str, members: &[&str]) -> ServerFrame {
    ok(ReplyData::Join {
        room: room.into(),
        topic: String::new(),
        members: members.iter().map(|n| member(n)).collect(),
    })
}

pub(super) fn history_reply(room: &str, messages: Vec<Message>) -> ServerFrame {
    ok(ReplyData::History {
        room: room.into(),
        messages,
    })
}

/// `ann`, connected and in `rooms` (the first current), each room with ann and bob in it.
pub(super) fn ann_in(rooms: &[&str]) -> Model {
    let mut model = Model::new("ann");
    model.welcomed(&welcome("ann", &[]), false);
    model.started(&welcome("ann", &[]));
    for room in rooms {
        model.apply_reply(join_reply(room, &["ann", "bob"]));
    }
    if let Some(first) = rooms.first() {
        model.set_current(first);
    }
    model
}

pub(super) fn info(text: &str) -> Show {
    Show::Info(text.into())
}

pub(super) fn nicks(model: &Model, room: &str) -> Vec<String> {
    let list = model.members(room).unwrap_or_default();
    list.iter().map(|m| m.nick.clone()).collect()
}

pub(super) fn ids(show: &[Show]) -> Vec<&str> {
    show.iter()
        .filter_map(|s| match s {
            Show::Message { message, .. } => Some(message.id.as_str()),
            _ => None,
        })
        .collect()
}

// ----- connecting -----

#[test]
fn the_first_welcome_greets_and_takes_the_servers_rooms() {
    let mut model = Model::new("ann");
    let w = welcome("ann", &["lobby", "dev"]);
    assert_eq!(model.welcomed(&w, false), vec![]);
    assert_eq!(
        model.started(&w),
        vec![
            info("connected to office (lanchat-server/0.1.0) as ann"),
            info("hello"),
            info("be nice"),
        ]
    );
    assert_eq!(model.rooms(), ["lobby", "dev"]);
    assert_eq!(model.current(), Some("lobby"));
    assert_eq!(model.prompt(), "#lobby> ");
}

#[test]
fn a_taken_nick_is_replaced_by_the_one_the_server_gave() {
    let mut model = Model::new("ann");
    let shown = model.welcomed(&welcome("ann_2", &[]), true);
    assert_eq!(shown, vec![info("the nick ann is taken; you are ann_2")]);
    assert_eq!(model.nick(), "ann_2");
}

#[test]
fn a_nick_given_instead_is_wanted_back_until_taken_or_given_up() {
    let mut model = Model::new("ann");
    model.welcomed(&welcome("ann_2", &[]), true);
    assert_eq!(model.wanted_nick(), Some("ann"));
    // Reconnects say hello with the nick asked for, not ann_2 (which would become ann_2_2).
    assert_eq!(model.hello_nick(), "ann");
    let second = model.welcomed(&welcome("ann_3", &[]), true);
    assert_eq!(second, vec![info("the nick ann is taken; you are ann_3")]);
    assert_eq!(model.wanted_nick(), Some("ann"));

    // Its holder leaving or renamed frees it; others do not.
    let quit = |nick: &str| {
        ServerFrame::Quit(QuitEvent {
            nick: nick.into(),
            reason: "timeout".into(),
        })
    };
    let renamed = ServerFrame::Nick(NickChange {
        old: "ANN".into(),
        new: "ann_away".into(),
    });
    assert!(model.frees_wanted_nick(&quit("ann")));
    assert!(model.frees_wanted_nick(&renamed));
    assert!(!model.frees_wanted_nick(&quit("bob")));

    model.apply_reply(ok(ReplyData::Nick { nick: "ann".into() }));
    assert_eq!((model.nick(), model.wanted_nick()), ("ann", None));
    assert!(!model.frees_wanted_nick(&quit("ann")));

    // Welcomed with the nick asked for: nothing to want back.
    let mut model = Model::new("ann");
    model.welcomed(&welcome("ann_2", &[]), true);
    model.welcomed(&welcome("ann", &[]), false);
    assert_eq!((model.nick(), model.wanted_nick()), ("ann", None));
    model.welcomed(&welcome("ann_2", &[]), true);
    model.forget_wanted_nick();
    assert_eq!(model.hello_nick(), "ann_2");
}

// ----- replies -----

#[test]
fn join_adds_the_room_makes_it_current_and_asks_for_its_history() {
    let mut model = ann_in(&["lobby"]);
    let outcome = model.apply_reply(ok(ReplyData::Join {
        room: "dev".into(),
        topic: "rust".into(),
        members: vec![member("ann"), member("cat")],
    }));
    assert_eq!(
        outcome.show,
        vec![
            info("joined #dev"),
            info("topic of #dev: rust"),
            Show::Members {
                room: "dev".into(),
                members: vec![member("ann"), member("cat")],
            },
        ]
    );
    assert_eq!(outcome.fetch_history.as_deref(), Some("dev"));
    assert_eq!(model.rooms(), ["lobby", "dev"]);
    assert_eq!(model.current(), Some("dev"));
    assert_eq!(model.nicks_here(), ["ann", "cat"]);
    // Joining a joined room again (any case) adds no second entry.
    model.apply_reply(join_reply("DEV", &["ann"]));
    assert_eq!(model.rooms(), ["lobby", "dev"]);
}

#[test]
fn leaving_the_current_room_moves_to_the_first_one_left() {
    let mut model = ann_in(&["lobby", "dev", "ops"]);
    model.set_current("dev");
    let shown = model.apply_reply(ok(ReplyData::Leave { room: "dev".into() }));
    assert_eq!(
        shown.show,
        vec![info("left #dev"), info("now talking in #lobby")]
    );
    assert_eq!(model.current(), Some("lobby"));
    assert_eq!(model.members("dev"), None);
    // Leaving another room keeps the current one.
    model.apply_reply(ok(ReplyData::Leave { room: "ops".into() }));
    assert_eq!(model.current(), Some("lobby"));
    let shown = model.apply_reply(ok(ReplyData::Leave {
        room: "lobby".into(),
    }));
    assert_eq!(shown.show, vec![info("left #lobby")]);
    assert_eq!(model.current(), None);
    assert_eq!(model.prompt(), "(no room)> ");
}

#[test]
fn own_nick_change_renames_the_user_everywhere() {
    let mut model = ann_in(&["lobby", "dev"]);
    let shown = model.apply_reply(ok(ReplyData::Nick {
        nick: "anna".into(),
    }));
    assert_eq!(shown.show, vec![info("you are now known as anna")]);
    assert_eq!(model.nick(), "anna");
    assert_eq!(nicks(&model, "lobby"), ["anna", "bob"]);
    assert_eq!(nicks(&model, "dev"), ["anna", "bob"]);
}

#[test]
fn others_nick_changes_rename_the_member_and_leave_the_user_alone() {
    let mut model = ann_in(&["lobby"]);
    let event = ServerFrame::Nick(NickChange {
        old: "BOB".into(),
        new: "rob".into(),
    });
    assert_eq!(model.apply_event(event.clone()), vec![Show::Event(event)]);
    assert_eq!(model.nick(), "ann");
    assert_eq!(nicks(&model, "lobby"), ["ann", "rob"]);
}

#[test]
fn status_replies_set_the_users_presence_and_are_restored() {
    let mut model = ann_in(&["lobby"]);
    let shown = model.apply_reply(ok(ReplyData::Status {
        status: Status::Away,
        text: Some("lunch".into()),
    }));
    assert_eq!(shown.show, vec![info("you are away: lunch")]);
    let me = &model.members("lobby").unwrap()[0];
    assert_eq!(
        (me.status, me.text.as_deref()),
        (Status::Away, Some("lunch"))
    );
    assert_eq!(
        model.restore(&welcome("ann", &[])).status,
        Some(Command::Status {
            status: Status::Away,
            text: Some("lunch".into())
        })
    );
    let busy = ReplyData::Status {
        status: Status::Busy,
        text: None,
    };
    assert_eq!(model.apply_reply(ok(busy)).show, vec![info("you are busy")]);
    let back = ReplyData::Status {
        status: Status::Online,
        text: None,
    };
    assert_eq!(model.apply_reply(ok(back)).show, vec![info("you are back")]);
    assert_eq!(model.restore(&welcome("ann", &[])).status, None);
}

#[test]
fn topic_replies_say_the_topic_or_what_was_done() {
    let mut model = ann_in(&["lobby"]);
    let topic = |t: &str| {
        ok(ReplyData::Topic {
            room: "lobby".into(),
            topic: t.into(),
        })
    };
    assert_eq!(
        model.apply_reply(topic("t")).show,
        vec![info("topic of #lobby: t")]
    );
    assert_eq!(
        model.apply_reply(topic("")).show,
        vec![info("#lobby has no topic")]
    );
    let set = |t: Option<&str>| Command::Topic {
        room: "lobby".into(),
        topic: t.map(str::to_owned),
    };
    assert_eq!(
        model.apply_reply_to(&set(Some("t")), topic("t")).show,
        vec![info("set the topic of #lobby: t")]
    );
    assert_eq!(
        model.apply_reply_to(&set(Some("")), topic("")).show,
        vec![info("cleared the topic of #lobby")]
    );
    assert_eq!(
        model.apply_reply_to(&set(None), topic("t")).show,
        vec![info("topic of #lobby: t")]
    );
}

#[test]
fn who_replies_are_stored_silently_and_shown_when_asked() {
    let mut model = ann_in(&["lobby"]);
    let who = |room: &str| {
        ok(ReplyData::Who {
            room: room.into(),
            members: vec![member("ann"), member("cat")],
        })
    };
    assert_eq!(model.apply_reply(who("lobby")), Outcome::default());
    assert_eq!(nicks(&model, "lobby"), ["ann", "cat"]);
    // Not for a room the user is not in.
    model.apply_reply(who("elsewhere"));
    assert_eq!(model.members("elsewhere"), None);
    let asked = Command::Who {
        room: "lobby".into(),
    };
    assert_eq!(
        model.apply_reply_to(&asked, who("lobby")).show,
        vec![Show::Members {
            room: "lobby".into(),
            members: vec![member("ann"), member("cat")],
        }]
    );
}

#[test]
fn the_room_list_is_shown_and_its_rooms_completed() {
    let mut model = ann_in(&["lobby"]);
    let rooms = vec![RoomInfo {
        name: "dev".into(),
        members: 3,
        topic: String::new(),
    }];
    let shown = model.apply_reply(ok(ReplyData::Rooms {
        rooms: rooms.clone(),
        next: None,
    }));
    let listed = |rooms: Vec<RoomInfo>| Show::Rooms {
        rooms,
        joined: vec![false],
    };
    assert_eq!(shown.show, vec![listed(rooms.clone())]);
    assert_eq!(model.room_names(), ["lobby", "dev"]);
    // A page that is not the last says how to see the next.
    let shown = model.apply_reply(ok(ReplyData::Rooms {
        rooms: rooms.clone(),
        next: Some("dev".into()),
    }));
    assert_eq!(
        shown.show,
        vec![
            listed(rooms),
            Show::Info("more rooms follow: /rooms dev".into())
        ]
    );
}

#[test]
fn asked_history_is_shown_even_when_seen_and_says_when_empty() {
    let mut model = ann_in(&["lobby"]);
    model.apply_event(ServerFrame::Message(msg("01", "lobby", "bob")));
    let shown = model.apply_reply(history_reply(
        "lobby",
        vec![msg("01", "lobby", "bob"), msg("02", "lobby", "bob")],
    ));
    assert_eq!(ids(&shown.show), ["01", "02"]);
    // Between lines saying where it starts and ends.
    assert_eq!(
        (shown.show.first(), shown.show.last()),
        (
            Some(&Show::Backlog("history of #lobby (2 messages):".into())),
            Some(&Show::Backlog("end of the history of #lobby".into()))
        )
    );
    // It counts as shown: catching up later does not repeat it.
    assert!(model
        .apply_event(ServerFrame::Message(msg("02", "lobby", "bob")))
        .is_empty());
    let empty = model.apply_reply(history_reply("lobby", vec![]));
    assert_eq!(empty.show, vec![info("no messages")]);
}

#[test]
fn recent_history_shows_only_what_was_not_shown() {
    let mut model = ann_in(&["lobby"]);
    model.apply_event(ServerFrame::Message(msg("01", "lobby", "bob")));
    let reply = history_reply(
        "lobby",
        vec![msg("01", "lobby", "bob"), msg("02", "lobby", "bob")],
    );
    assert_eq!(ids(&model.history(reply)), ["02"]);
    assert!(model.history(error(ErrorCode::NotInRoom, "no")).is_empty());
}

#[test]
fn own_messages_are_shown_as_sent_once() {
    let mut model = ann_in(&["lobby"]);
    let say = Command::Say {
        room: "lobby".into(),
        text: "hello".into(),
    };
    let reply = ok(ReplyData::Say {
        id: "07".into(),
        ts: 5,
        room: "lobby".into(),
    });
    let shown = model.apply_reply_to(&say, reply);
    let expected = Message {
        id: "07".into(),
        ts: 5,
        room: "lobby".into(),
        from: "ann".into(),
        text: "hello".into(),
    };
    assert_eq!(
        shown.show,
        vec![Show::Message {
            message: expected.clone(),
            room_shown: false,
        }]
    );
    // The same message fetched again (after a reconnect) is not shown twice.
    assert!(model.apply_event(ServerFrame::Message(expected)).is_empty());
    // An error reply to it is shown.
    let refused = model.apply_reply_to(&say, error(ErrorCode::TextTooLong, "too long"));
    assert_eq!(
        refused.show,
        vec![Show::Error(
            "text_too_long: too long (not sent: hello)".into()
        )]
    );
    let long = Command::Dm {
        to: "bob".into(),
        text: "y".repeat(100),
    };
    let refused = model.apply_reply_to(&long, error(ErrorCode::RateLimited, "slow down"));
    assert_eq!(
        refused.show,
        vec![Show::Error(format!(
            "rate_limited: slow down (not sent: {}...)",
            "y".repeat(60)
        ))]
    );
}

#[test]
fn sent_direct_messages_are_shown_unless_to_oneself() {
    let mut model = ann_in(&["lobby"]);
    let dm = |to: &str| Command::Dm {
        to: to.into(),
        text: "psst".into(),
    };
    let reply = |to: &str| {
        ok(ReplyData::Dm {
            id: "08".into(),
            ts: 5,
            to: to.into(),
            away: None,
            away_text: None,
        })
    };
    assert_eq!(
        model.apply_reply_to(&dm("bob"), reply("bob")).show,
        vec![Show::Direct(Direct {
            id: "08".into(),
            ts: 5,
            from: "ann".into(),
            to: "bob".into(),
            text: "psst".into(),
        })]
    );
    // A DM to oneself also arrives as `direct`; that one is shown.
    assert!(model
        .apply_reply_to(&dm("ANN"), reply("ANN"))
        .show
        .is_empty());
}

#[test]
fn error_replies_are_shown_even_when_not_understood() {
    let mut model = ann_in(&["lobby"]);
    let shown = model.apply_reply(error(ErrorCode::NotInRoom, "not in #x"));
    assert_eq!(
        shown.show,
        vec![Show::Error("not_in_room: not in #x".into())]
    );
    assert_eq!(
        undecoded_reply(r#"{"type":"error","code":"new_code","re":3}"#),
        vec![Show::Error("new_code: ".into())]
    );
    assert!(undecoded_reply(r#"{"type":"ok","cmd":"future","re":3}"#).is_empty());
    assert!(undecoded_reply("not json").is_empty());
    assert_eq!(model.apply_reply(ServerFrame::Ping {}), Outcome::default());
}

// ----- events -----

#[test]
fn room_messages_are_shown_once_with_their_room_when_not_obvious() {
    let mut model = ann_in(&["lobby"]);
    let shown = model.apply_event(ServerFrame::Message(msg("01", "lobby", "bob")));
    assert_eq!(
        shown,
        vec![Show::Message {
            message: msg("01", "lobby", "bob"),
            room_shown: false,
        }]
    );
    assert!(model
        .apply_event(ServerFrame::Message(msg("01", "lobby", "bob")))
        .is_empty());
    // A message for a room that is not current names its room; so does any with two rooms.
    let other = model.apply_event(ServerFrame::Message(msg("02", "dev", "bob")));
    assert!(matches!(
        other[0],
        Show::Message {
            room_shown: true,
            ..
        }
    ));
    model.apply_reply(join_reply("dev", &["ann"]));
    model.set_current("lobby");
    let two = model.apply_event(ServerFrame::Message(msg("03", "lobby", "bob")));
    assert!(matches!(
        two[0],
        Show::Message {
            room_shown: true,
            ..
        }
    ));
}

#[test]
fn joins_leaves_and_quits_change_the_member_lists() {
    let mut model = ann_in(&["lobby", "dev"]);
    let join = ServerFrame::Join(RoomNick {
        room: "lobby".into(),
        nick: "cat".into(),
    });
    assert_eq!(model.apply_event(join.clone()), vec![Show::Event(join)]);
    // A join heard twice (or in another case) lists the member once.
    model.apply_event(ServerFrame::Join(RoomNick {
        room: "LOBBY".into(),
        nick: "Cat".into(),
    }));
    assert_eq!(nicks(&model, "lobby"), ["ann", "bob", "cat"]);
    let leave = ServerFrame::Leave(LeaveEvent {
        room: "lobby".into(),
        nick: "cat".into(),
        kicked_by: None,
        reason: None,
    });
    assert_eq!(model.apply_event(leave.clone()), vec![Show::Event(leave)]);
    assert_eq!(nicks(&model, "lobby"), ["ann", "bob"]);
    let quit = ServerFrame::Quit(QuitEvent {
        nick: "bob".into(),
        reason: "bye".into(),
    });
    assert_eq!(model.apply_event(quit.clone()), vec![Show::Event(quit)]);
    assert_eq!(nicks(&model, "lobby"), ["ann"]);
    assert_eq!(nicks(&model, "dev"), ["ann"]);
    // Removed by an operator: the room is left.
    let kicked = ServerFrame::Leave(LeaveEvent {
        room: "DEV".into(),
        nick: "Ann".into(),
        kicked_by: Some("bob".into()),
        reason: None,
    });
    model.apply_event(kicked);
    assert!(!model.is_joined("dev"));
    assert!(model.is_joined("lobby"));
}

#[test]
fn presence_events_change_a_members_status() {
    let mut model = ann_in(&["lobby"]);
    let away = ServerFrame::Presence(Member {
        nick: "bob".into(),
        status: Status::Away,
        text: Some("lunch".into()),
        op: false,
    });
    assert_eq!(model.apply_event(away.clone()), vec![Show::Event(away)]);
    let bob = &model.members("lobby").unwrap()[1];
    assert_eq!(
        (bob.status, bob.text.as_deref()),
        (Status::Away, Some("lunch"))
    );
}

#[test]
fn other_events_are_shown_as_they_are() {
    let mut model = ann_in(&["lobby"]);
    let topic = ServerFrame::Topic(TopicChange {
        room: "lobby".into(),
        topic: "t".into(),
        by: "bob".into(),
    });
    assert_eq!(model.apply_event(topic.clone()), vec![Show::Event(topic)]);
    let bye = ServerFrame::Bye(Bye {
        re: None,
        reason: ByeReason::ShuttingDown,
        message: "restarting".into(),
    });
    assert_eq!(model.apply_event(bye.clone()), vec![Show::Event(bye)]);
    let dm = Direct {
        id: "09".into(),
        ts: 5,
        from: "bob".into(),
        to: "ann".into(),
        text: "psst".into(),
    };
    assert_eq!(
        model.apply_event(ServerFrame::Direct(dm.clone())),
        vec![Show::Direct(dm)]
    );
    assert_eq!(
        model.apply_event(error(ErrorCode::TooManyErrors, "slow down")),
        vec![Show::Error("too_many_errors: slow down".into())]
    );
    assert!(model.apply_event(ServerFrame::Ping {}).is_empty());
    assert!(model
        .apply_event(ServerFrame::Welcome(welcome("ann", &[])))
        .is_empty());
}

// ----- input -----

#[test]
fn switching_by_position_or_name() {
    let mut model = ann_in(&["lobby", "dev"]);
    assert_eq!(
        model.switch(&SwitchTarget::Position(2)),
        info("now talking in #dev")
    );
    assert_eq!(model.current(), Some("dev"));
    assert_eq!(
        model.switch(&SwitchTarget::Room("LOBBY".into())),
        info("now talking in #lobby")
    );
    assert_eq!(model.current(), Some("lobby"));
    assert_eq!(
        model.switch(&SwitchTarget::Position(3)),
        Show::Error("no room at position 3; you are in 1:#lobby 2:#dev".into())
    );
    assert_eq!(
        model.switch(&SwitchTarget::Room("ops".into())),
        Show::Error("you are not in #ops; /join ops first".into())
    );
    assert_eq!(model.current(), Some("lobby"));
    let mut alone = ann_in(&[]);
    assert_eq!(
        alone.switch(&SwitchTarget::Position(1)),
        Show::Error("no room at position 1; you are in no room".into())
    );
}

#[test]
fn shown_ids_are_bounded() {
    let mut shown = ShownIds::default();
    assert!(shown.insert("a"));
    assert!(!shown.insert("a"));
    for i in 0..SHOWN_IDS {
        shown.insert(&i.to_string());
    }
    assert_eq!(shown.set.len(), SHOWN_IDS);
    assert!(shown.insert("a"));
}
