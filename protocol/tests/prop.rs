//! Property tests: the codec and the request parser never panic and keep memory bounded whatever
//! the bytes and however they are split; encode-then-decode is the identity; validation agrees
//! with the rules as PROTOCOL.md states them.

use bytes::BytesMut;
use lanchat_protocol::validate::{check_name, check_text};
use lanchat_protocol::{
    Command, Hello, HistoryQuery, Line, LineCodec, ModeRequest, Request, RequestId, ServerFrame,
    Status,
};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// Feed `input` to a codec in pieces cut at `cuts`, returning every item and the largest buffer.
fn decode_in_pieces(max_line: usize, input: &[u8], cuts: &[usize]) -> (Vec<Line>, usize) {
    let mut codec = LineCodec::new(max_line);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut peak = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut start = 0;
    for p in points {
        buf.extend_from_slice(&input[start..p]);
        start = p;
        peak = peak.max(buf.len());
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
        peak = peak.max(buf.len());
    }
    while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
        out.push(item);
    }
    (out, peak)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn codec_never_panics_and_stays_bounded(
        input in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        max_line in 1usize..64,
    ) {
        let (items, _) = decode_in_pieces(max_line, &input, &cuts);
        for item in items {
            if let Line::Frame(f) = item {
                prop_assert!(!f.is_empty() && f.len() <= max_line);
                prop_assert!(!f.contains(&b'\n'));
            }
        }
        // Memory: what stays buffered between reads never exceeds max_line + 2.
        let mut codec = LineCodec::new(max_line);
        let mut buf = BytesMut::new();
        for b in &input {
            buf.extend_from_slice(&[*b]);
            while codec.decode(&mut buf).unwrap().is_some() {}
            prop_assert!(buf.len() <= max_line + 2);
        }
    }

    #[test]
    fn codec_yields_the_lines_however_split(
        lines in proptest::collection::vec("[^\n\r]{0,40}", 0..20),
        crlf in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let input: String = lines.iter().map(|l| format!("{l}{sep}")).collect();
        let (items, _) = decode_in_pieces(160, input.as_bytes(), &cuts);
        let expected: Vec<Line> = lines
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| if l.len() > 160 { Line::TooLong } else { Line::Frame(BytesMut::from(l.as_str())) })
            .collect();
        prop_assert_eq!(items, expected);
    }

    #[test]
    fn overlong_lines_never_swallow_their_neighbours(
        lens in proptest::collection::vec(0usize..100, 1..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
        max_line in 1usize..40,
    ) {
        let lines: Vec<String> = lens.iter().enumerate()
            .map(|(i, n)| format!("{i}:{}", "x".repeat(*n)))
            .collect();
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let (items, peak) = decode_in_pieces(max_line, input.as_bytes(), &cuts);
        let expected: Vec<Line> = lines
            .iter()
            .map(|l| if l.len() > max_line { Line::TooLong } else { Line::Frame(BytesMut::from(l.as_str())) })
            .collect();
        prop_assert_eq!(items, expected);
        prop_assert!(peak <= input.len());
    }

    #[test]
    fn request_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Request::decode(&bytes);
    }

    #[test]
    fn request_decoder_never_panics_on_json_objects(
        ty in prop_oneof![
            Just("hello".to_owned()), Just("say".to_owned()), Just("history".to_owned()),
            Just("status".to_owned()), "[a-z]{0,8}"],
        keys in proptest::collection::vec(prop_oneof![
            Just("id"), Just("room"), Just("text"), Just("nick"), Just("limit"), Just("before"),
            Just("after"), Just("status"), Just("protocol"), Just("to"), Just("topic")], 0..6),
        values in proptest::collection::vec(arb_json(), 0..6),
    ) {
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), serde_json::Value::String(ty));
        for (k, v) in keys.iter().zip(values) {
            obj.insert((*k).into(), v);
        }
        let line = serde_json::to_vec(&obj).unwrap();
        if let Err(e) = Request::decode(&line) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn history_cursors_are_checked_when_decoded(cursor in prop_oneof![
        any::<String>(),
        "[0-9a-fA-F-]{34,38}",
        message_id().prop_map(Option::unwrap_or_default),
    ]) {
        // PROTOCOL.md: a `before`/`after` that is not a UUID is `bad_frame` naming the field,
        // whatever the room.
        let shaped = cursor.len() == 36
            && cursor.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        for field in ["before", "after"] {
            let line = serde_json::json!({"type":"history","id":1,"room":"nowhere",field:cursor});
            match Request::decode(&serde_json::to_vec(&line).unwrap()) {
                Ok(_) => prop_assert!(shaped, "{cursor:?} accepted"),
                Err(e) => {
                    prop_assert!(!shaped, "{cursor:?} refused");
                    prop_assert_eq!(e.code, lanchat_protocol::ErrorCode::BadFrame);
                    prop_assert!(e.message.contains(field), "{}", e.message);
                    prop_assert_eq!(e.re, Some(RequestId::Int(1)));
                }
            }
        }
    }

    #[test]
    fn encode_then_decode_is_identity(req in arb_request()) {
        let line = req.encode_line();
        prop_assert_eq!(line.last(), Some(&b'\n'));
        prop_assert!(!line[..line.len() - 1].contains(&b'\n'), "one frame is one line");
        let back = Request::decode(&line[..line.len() - 1]).unwrap();
        prop_assert_eq!(back, req);
    }

    #[test]
    fn server_messages_round_trip(text in any::<String>(), from in "[a-z]{1,8}", ts in any::<u64>()) {
        let frame = ServerFrame::Message(lanchat_protocol::Message {
            id: "019aa8dc-487b-7a0d-b2c9-5aa144c1d0ff".into(), ts, room: "r".into(), from, text,
        });
        let line = frame.encode_line();
        prop_assert!(!line[..line.len() - 1].contains(&b'\n'));
        prop_assert_eq!(ServerFrame::decode(&line).unwrap(), frame);
    }

    #[test]
    fn names_follow_the_documented_rule(name in any::<String>()) {
        // PROTOCOL.md: 1 to 32 characters, each a letter, a digit, `_`, `-` or `.`; then the
        // Unicode rules (invisible characters, identifiers, scripts), which only refuse more.
        let n = name.chars().count();
        let documented = (1..=32).contains(&n)
            && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.');
        prop_assert!(documented || check_name(&name).is_err());
    }

    #[test]
    fn ascii_names_follow_the_character_rule_alone(name in "[ -~]{0,34}") {
        // ASCII letters, digits and `_-.` pass every Unicode rule.
        let n = name.chars().count();
        let documented = (1..=32).contains(&n)
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        prop_assert_eq!(check_name(&name).is_ok(), documented);
    }

    #[test]
    fn texts_follow_the_documented_rule(text in any::<String>(), max in 1usize..64) {
        // PROTOCOL.md: 1 to max_text bytes, no control character but newline and tab.
        let documented = !text.is_empty()
            && text.len() <= max
            && !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
        prop_assert_eq!(check_text(&text, max).is_ok(), documented);
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,70}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_id() -> impl Strategy<Value = Option<RequestId>> {
    prop_oneof![
        Just(None),
        any::<i64>().prop_map(|n| Some(RequestId::Int(n))),
        (i64::MAX as u64 + 1..=u64::MAX).prop_map(|n| Some(RequestId::UInt(n))),
        "(?s).{0,16}".prop_map(|s| Some(RequestId::Str(s))),
    ]
}

/// A `history` cursor: absent, or a UUID in hyphenated form, either case.
fn message_id() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    )
}

/// A room key: 1 to 64 characters, none of them a control character.
fn key() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{1,64}"
}

fn arb_request() -> impl Strategy<Value = Request> {
    let s = || any::<String>();
    let os = || proptest::option::of(any::<String>());
    let status = prop_oneof![Just(Status::Online), Just(Status::Away), Just(Status::Busy)];
    let command = prop_oneof![
        (
            s(),
            proptest::option::of(any::<u64>()),
            os(),
            os(),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(nick, protocol, client, password, autojoin)| {
                Command::Hello(Hello {
                    nick,
                    protocol,
                    client,
                    password,
                    secret: None,
                    autojoin,
                })
            }),
        (s(), proptest::option::of(key())).prop_map(|(room, key)| Command::Join { room, key }),
        (
            s(),
            proptest::option::of(any::<bool>()),
            proptest::option::of(proptest::option::of(key())),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(room, invite_only, key, topic_lock)| {
                Command::Mode(ModeRequest {
                    room,
                    invite_only,
                    key,
                    topic_lock,
                })
            }),
        (s(), s()).prop_map(|(room, nick)| Command::Invite { room, nick }),
        (s(), s(), os()).prop_map(|(room, nick, reason)| Command::Kick { room, nick, reason }),
        (s(), s()).prop_map(|(room, nick)| Command::Op { room, nick }),
        s().prop_map(|room| Command::Leave { room }),
        (s(), s()).prop_map(|(room, text)| Command::Say { room, text }),
        (s(), s()).prop_map(|(to, text)| Command::Dm { to, text }),
        s().prop_map(|nick| Command::Nick { nick, secret: None }),
        (status, os()).prop_map(|(status, text)| Command::Status { status, text }),
        (s(), os()).prop_map(|(room, topic)| Command::Topic { room, topic }),
        s().prop_map(|room| Command::Who { room }),
        (
            proptest::option::of("(?s).{1,32}"),
            proptest::option::of(1u32..=500)
        )
            .prop_map(|(after, limit)| Command::Rooms { after, limit }),
        (
            s(),
            message_id(),
            message_id(),
            proptest::option::of(1u32..=200)
        )
            .prop_map(|(room, before, after, limit)| {
                Command::History(HistoryQuery {
                    room,
                    before,
                    after,
                    limit,
                })
            }),
        Just(Command::Ping {}),
        "[ -~]{8,64}".prop_map(|secret| Command::Register { secret }),
        Just(Command::Unregister {}),
        Just(Command::Pong {}),
        os().prop_map(|reason| Command::Quit { reason }),
    ];
    (arb_id(), command).prop_map(|(id, command)| Request { id, command })
}
