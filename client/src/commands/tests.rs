//! Parsing every command, and turning actions into requests.

use super::*;

fn ok(line: &str) -> Action {
    parse(line).unwrap().unwrap()
}

fn hint(line: &str) -> String {
    parse(line).unwrap_err().0
}

#[test]
fn plain_text_and_blank_lines() {
    assert_eq!(parse("").unwrap(), None);
    assert_eq!(parse("   ").unwrap(), None);
    assert_eq!(ok("hello there"), Action::Say("hello there".into()));
    assert_eq!(ok("  indented\r\n"), Action::Say("  indented".into()));
    assert_eq!(ok("//not a command"), Action::Say("/not a command".into()));
}

#[test]
fn account_commands() {
    assert_eq!(ok("/register"), Action::Register(None));
    assert_eq!(
        ok("/register my long secret"),
        Action::Register(Some("my long secret".into()))
    );
    assert!(hint("/register short").contains("8 to 256 bytes"));
    assert_eq!(ok("/unregister"), Action::Unregister);
    assert_eq!(hint("/unregister me"), "usage: /unregister ");
    assert_eq!(to_command(&Action::Register(None), None), Ok(None));
    assert_eq!(
        to_command(&Action::Unregister, None),
        Ok(Some(Command::Unregister {}))
    );
}

#[test]
fn private_room_commands() {
    assert_eq!(
        ok("/join #vault s3cret"),
        Action::JoinWithKey("vault".into(), "s3cret".into())
    );
    assert_eq!(hint("/join a b c"), "usage: /join ROOM [KEY]");
    assert_eq!(ok("/mode"), Action::Mode(ModeChange::default()));
    assert_eq!(
        ok("/mode +i -t +k k3y"),
        Action::Mode(ModeChange {
            invite_only: Some(true),
            key: Some(Some("k3y".into())),
            topic_lock: Some(false),
        })
    );
    assert_eq!(
        ok("/mode -k"),
        Action::Mode(ModeChange {
            key: Some(None),
            ..ModeChange::default()
        })
    );
    assert!(hint("/mode +k").starts_with("usage: /mode"));
    assert!(hint("/mode +x").starts_with("usage: /mode"));
    assert_eq!(ok("/invite bob"), Action::Invite("bob".into()));
    assert_eq!(ok("/op bob"), Action::Op("bob".into()));
    assert_eq!(
        ok("/kick bob  go away "),
        Action::Kick {
            nick: "bob".into(),
            reason: Some("go away".into())
        }
    );
    assert!(hint("/kick").starts_with("usage: /kick"));
    let cmd = |a: Action| to_command(&a, Some("dev")).unwrap().unwrap();
    assert_eq!(
        cmd(ok("/mode -k +i")),
        Command::Mode(ModeRequest {
            room: "dev".into(),
            invite_only: Some(true),
            key: Some(None),
            topic_lock: None,
        })
    );
    assert_eq!(
        cmd(ok("/join dev pw")),
        Command::Join {
            room: "dev".into(),
            key: Some("pw".into())
        }
    );
    assert_eq!(
        cmd(ok("/kick bob")),
        Command::Kick {
            room: "dev".into(),
            nick: "bob".into(),
            reason: None
        }
    );
    assert!(
        to_command(&ok("/invite bob"), None).is_err(),
        "needs a room"
    );
    assert!(holds_key("/join vault s3cret"));
    assert!(holds_key("/mode +i +k s3cret"));
    assert!(!holds_key("/mode -k"));
    assert!(!holds_key("/join vault"));
    assert!(!holds_key("s3cret"));
}

#[test]
fn room_commands() {
    assert_eq!(ok("/join dev"), Action::Join("dev".into()));
    assert_eq!(ok("/join #dev"), Action::Join("dev".into()));
    assert_eq!(ok("/JOIN Dev"), Action::Join("Dev".into()));
    assert_eq!(ok("/leave"), Action::Leave(None));
    assert_eq!(ok("/leave #dev"), Action::Leave(Some("dev".into())));
    assert_eq!(
        ok("/switch dev"),
        Action::Switch(SwitchTarget::Room("dev".into()))
    );
    assert_eq!(ok("/switch 2"), Action::Switch(SwitchTarget::Position(2)));
    assert_eq!(ok("/2"), Action::Switch(SwitchTarget::Position(2)));
    assert_eq!(ok("/who"), Action::Who(None));
    assert_eq!(ok("/who lobby"), Action::Who(Some("lobby".into())));
    assert_eq!(ok("/rooms"), Action::Rooms(None));
    assert_eq!(ok("/rooms #rust"), Action::Rooms(Some("rust".into())));
    assert_eq!(ok("/topic"), Action::Topic(None));
    assert_eq!(
        ok("/topic  release on friday "),
        Action::Topic(Some("release on friday".into()))
    );
    assert_eq!(ok("/topic --clear"), Action::Topic(Some(String::new())));
    assert_eq!(
        to_command(&ok("/topic --clear"), Some("lobby")).unwrap(),
        Some(Command::Topic {
            room: "lobby".into(),
            topic: Some(String::new())
        })
    );
}

#[test]
fn people_and_status() {
    assert_eq!(
        ok("/msg bob  hi there "),
        Action::Msg {
            to: "bob".into(),
            text: "hi there".into()
        }
    );
    assert_eq!(ok("/me waves"), Action::Me("waves".into()));
    assert_eq!(ok("/nick ann_2"), Action::Nick("ann_2".into()));
    assert_eq!(ok("/away lunch"), Action::Away(Some("lunch".into())));
    assert_eq!(ok("/away"), Action::Away(None));
    assert_eq!(ok("/back"), Action::Back);
    assert_eq!(ok("/busy"), Action::Busy(None));
    assert_eq!(ok("/history"), Action::History(None));
    assert_eq!(ok("/history 50"), Action::History(Some(50)));
    assert_eq!(ok("/quit"), Action::Quit(None));
    assert_eq!(ok("/quit see you"), Action::Quit(Some("see you".into())));
    assert_eq!(ok("/help"), Action::Help);
    assert_eq!(ok("/focus"), Action::Focus);
}

#[test]
fn wrong_arguments_get_one_line_hints() {
    assert_eq!(hint("/join"), "usage: /join ROOM [KEY]");
    assert_eq!(hint("/join a b c"), "usage: /join ROOM [KEY]");
    assert!(hint("/join a/b").contains("may contain only"));
    assert_eq!(hint("/msg bob"), "usage: /msg NICK TEXT");
    assert_eq!(hint("/msg"), "usage: /msg NICK TEXT");
    assert!(hint("/msg b@b hi").contains("nick"));
    assert_eq!(hint("/me"), "usage: /me ACTION");
    assert_eq!(hint("/nick"), "usage: /nick NEW");
    assert!(hint("/nick a b").starts_with("usage"));
    assert!(hint("/history 0").starts_with("usage: /history"));
    assert!(hint("/history 201").starts_with("usage: /history"));
    assert!(hint("/history x").starts_with("usage: /history"));
    assert_eq!(hint("/back now"), "usage: /back ");
    assert!(hint("/frobnicate").starts_with("unknown command /frobnicate"));
    assert!(hint("/").starts_with("unknown command"));
    for h in ["/join", "/frobnicate x y", "/msg"] {
        assert!(!hint(h).contains('\n'));
    }
}

#[test]
fn actions_become_requests() {
    let cur = Some("lobby");
    assert_eq!(
        to_command(&ok("hi"), cur).unwrap(),
        Some(Command::Say {
            room: "lobby".into(),
            text: "hi".into()
        })
    );
    assert_eq!(
        to_command(&ok("/me waves"), cur).unwrap(),
        Some(Command::Say {
            room: "lobby".into(),
            text: "/me waves".into()
        })
    );
    assert_eq!(
        to_command(&ok("/leave"), cur).unwrap(),
        Some(Command::Leave {
            room: "lobby".into()
        })
    );
    assert_eq!(
        to_command(&ok("/back"), cur).unwrap(),
        Some(Command::Status {
            status: Status::Online,
            text: None
        })
    );
    assert_eq!(
        to_command(&ok("/history"), cur).unwrap(),
        Some(Command::History(HistoryQuery {
            room: "lobby".into(),
            before: None,
            after: None,
            limit: Some(20)
        }))
    );
    assert_eq!(to_command(&ok("/2"), cur).unwrap(), None);
    assert!(to_command(&ok("hi"), None).unwrap_err().0.contains("/join"));
    assert_eq!(
        to_command(&ok("/join x"), None).unwrap(),
        Some(Command::Join {
            room: "x".into(),
            key: None
        })
    );
}

#[test]
fn help_covers_every_command() {
    let help = help_lines().join("\n");
    for (cmd, _, _) in COMMANDS {
        assert!(help.contains(cmd));
    }
}
