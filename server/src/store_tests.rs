//! The durable store: file names, modes, rotation, and the topic map, without a server.

use super::*;

#[test]
fn file_names_are_safe_and_distinct() {
    assert_eq!(room_file_name("lobby"), "lobby.jsonl");
    assert_eq!(room_file_name(".."), "%2E%2E.jsonl");
    assert_eq!(room_file_name("a/b"), "a%2Fb.jsonl");
    assert_eq!(room_file_name("ü"), "%C3%BC.jsonl");
    let long = "😀".repeat(32);
    let name = room_file_name(&long);
    assert!(name.len() < 255 && name.starts_with('~'), "{name}");
    assert!(!name.contains('/'));
    assert_ne!(room_file_name("a.b"), room_file_name("a_b"));
}

#[test]
fn base64url_known_values() {
    assert_eq!(base64url(b"f"), "Zg");
    assert_eq!(base64url(b"fo"), "Zm8");
    assert_eq!(base64url(b"foo"), "Zm9v");
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every file a data directory holds once a room has rotated and a topic was set.
const FILES: [&str; 4] = [
    "lock",
    "topics.json",
    "rooms/lobby.jsonl",
    "rooms/lobby.jsonl.1",
];

fn assert_private(data: &Path) {
    assert_eq!(mode(&data.join("rooms")), 0o700);
    for f in FILES {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
}

/// A stored message line of `lobby`.
fn message_line(text: String) -> String {
    let m = Message {
        id: Uuid::now_v7().to_string(),
        ts: 1,
        room: "lobby".into(),
        from: "ann".into(),
        text,
    };
    format!("{}\n", serde_json::to_string(&m).unwrap())
}

#[test]
fn files_left_open_to_others_are_made_private_at_start() {
    let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
    std::fs::create_dir_all(dir.join("rooms")).unwrap();
    let open_to_all = |p: &Path, m: u32| std::fs::set_permissions(p, Permissions::from_mode(m));
    for f in FILES {
        std::fs::write(dir.join(f), "").unwrap();
        open_to_all(&dir.join(f), 0o666).unwrap();
    }
    std::fs::write(dir.join("outside"), "").unwrap();
    std::os::unix::fs::symlink(dir.join("outside"), dir.join("rooms/link.jsonl")).unwrap();
    open_to_all(&dir.join("outside"), 0o644).unwrap();
    open_to_all(&dir.join("rooms"), 0o777).unwrap();
    open_to_all(&dir, 0o755).unwrap();
    let (store, _) = Store::open(&dir, 10).unwrap();
    assert_private(&dir);
    assert_eq!(
        mode(&dir.join("outside")),
        0o644,
        "a link's target is not touched"
    );
    assert_eq!(
        mode(&dir),
        0o755,
        "the operator's directory is only warned about"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_new_data_dir_and_its_files_are_private() {
    let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
    let (store, _) = Store::open(&dir.join("data"), 2).unwrap();
    let (handle, mut writer, _rx) = store.into_writer();
    // Three lines with a history of two: one rotation.
    let lines: String = (0..3).map(|i| message_line(format!("m{i}"))).collect();
    writer.append("lobby", lines.as_bytes(), 3);
    handle.topic(
        "lobby".into(),
        "lobby".into(),
        "t".into(),
        Default::default(),
    );
    writer.tick();
    let data = dir.join("data");
    assert_eq!(mode(&dir), 0o700, "a missing parent too");
    assert_eq!(mode(&data), 0o700);
    assert_private(&data);
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_batch_that_fills_a_file_is_split_at_the_rotation() {
    let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
    let (store, _) = Store::open(&dir, 10).unwrap();
    let (_handle, mut writer, _rx) = store.into_writer();
    let batch: String = (0..25).map(|i| message_line(format!("m{i}"))).collect();
    writer.append("lobby", batch.as_bytes(), 25);
    writer.fsync();
    let count = |name: &str| {
        std::fs::read_to_string(dir.join("rooms").join(name))
            .unwrap()
            .lines()
            .count()
    };
    // 0-9 went to a file rotated away and then replaced by 10-19; 20-24 are current.
    assert_eq!((count("lobby.jsonl.1"), count("lobby.jsonl")), (10, 5));
    drop(writer);
    let (_, loaded) = Store::open(&dir, 10).unwrap();
    let texts: Vec<String> = loaded.rooms[0]
        .1
        .iter()
        .map(|m| serde_json::from_slice::<Message>(&m.line).unwrap().text)
        .collect();
    assert_eq!(texts, (15..25).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The topics a data directory's `topics.json` holds, by room key: (room, topic).
fn topics_file(dir: &Path) -> HashMap<String, (String, String)> {
    let text = std::fs::read_to_string(dir.join("topics.json")).unwrap();
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    map.into_iter()
        .map(|(k, v)| {
            let field = |f: &str| v[f].as_str().unwrap().to_owned();
            (k, (field("room"), field("topic")))
        })
        .collect()
}

#[test]
fn a_topic_flood_is_one_rewrite_and_the_last_topic_of_each_room_wins() {
    let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
    let (store, _) = Store::open(&dir, 10).unwrap();
    let (handle, mut writer, _rx) = store.into_writer();
    let rooms = ["lobby", "ops", "gone"];
    for i in 0..100_000 {
        let key = rooms[i % 3];
        handle.topic(
            key.into(),
            key.to_uppercase(),
            format!("{key} {i}"),
            Default::default(),
        );
    }
    // The last change of `gone` clears its topic.
    handle.topic(
        "gone".into(),
        "GONE".into(),
        String::new(),
        Default::default(),
    );
    writer.tick();
    assert_eq!(writer.topic_writes, 1, "100,001 changes, one rewrite");
    let expected = HashMap::from([
        ("lobby".into(), ("LOBBY".into(), "lobby 99999".into())),
        ("ops".into(), ("OPS".into(), "ops 99997".into())),
    ]);
    assert_eq!(topics_file(&dir), expected);

    writer.tick();
    assert_eq!(writer.topic_writes, 1, "nothing changed: no rewrite");
    handle.topic(
        "ops".into(),
        "Ops".into(),
        "later".into(),
        Default::default(),
    );
    handle.topic(
        "ops".into(),
        "Ops".into(),
        "latest".into(),
        Default::default(),
    );
    writer.tick();
    assert_eq!(writer.topic_writes, 2);
    drop((handle, writer));

    let (_, loaded) = Store::open(&dir, 10).unwrap();
    let mut topics = loaded.topics;
    topics.sort();
    assert_eq!(
        topics,
        [
            ("LOBBY".into(), "lobby 99999".into()),
            ("Ops".into(), "latest".into())
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn topic_changes_take_no_room_in_the_message_queue() {
    let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
    let (store, _) = Store::open(&dir, 10).unwrap();
    let (handle, _writer, rx) = store.into_writer();
    for i in 0..QUEUE + 1 {
        handle.topic(
            "lobby".into(),
            "lobby".into(),
            format!("t{i}"),
            Default::default(),
        );
    }
    let line = Bytes::from(message_line("after the flood".into()));
    handle.append("lobby".into(), line.clone());
    match rx.try_recv() {
        Ok(Op::Append {
            room_key,
            line: got,
        }) => assert_eq!((room_key, got), ("lobby".into(), line)),
        _ => panic!("the message is first in the queue"),
    }
    assert!(rx.try_recv().is_err(), "and alone");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_writer_keeps_up_with_messages_during_a_topic_flood_and_shuts_down_at_once() {
    let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
    let (store, _) = Store::open(&dir, 1000).unwrap();
    let (handle, thread) = store.start();
    let mut sent = Vec::new();
    for i in 0..200_000 {
        handle.topic(
            "lobby".into(),
            "lobby".into(),
            format!("t{i}"),
            Default::default(),
        );
        if i % 20_000 == 0 {
            let line = message_line(format!("m{i}"));
            handle.append("lobby".into(), Bytes::from(line.clone()));
            sent.push(line);
        }
    }
    let file = dir.join("rooms/lobby.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    // In the kernel a few milliseconds after they were queued; well inside a second even on a
    // loaded machine, where the old writer needed 400,000 fsyncs first.
    while std::fs::read_to_string(&file).unwrap_or_default() != sent.concat() {
        assert!(
            Instant::now() < deadline,
            "messages stuck behind the topics"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let asked = Instant::now();
    handle.shutdown(Duration::from_secs(5));
    thread.join().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(topics_file(&dir)["lobby"].1, "t199999");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The texts of loaded messages, oldest first.
fn texts(messages: &[StoredMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| serde_json::from_slice::<Message>(&m.line).unwrap().text)
        .collect()
}

#[test]
fn a_load_sees_every_append_queued_before_it_and_the_newest_topic() {
    let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
    let (store, _) = Store::open(&dir, 10).unwrap();
    let (handle, thread) = store.start();
    // Queued back to back with the load: nothing has reached the disk when it is asked for.
    for i in 0..25 {
        handle.append("lobby".into(), Bytes::from(message_line(format!("m{i}"))));
    }
    handle.topic(
        "lobby".into(),
        "Lobby".into(),
        "not yet in topics.json".into(),
        Default::default(),
    );
    let load = handle
        .load("lobby")
        .expect("queued")
        .blocking_recv()
        .unwrap();
    assert_eq!(load.room.as_deref(), Some("lobby"));
    // The newest `history` (10), read across the rotated file and the current one.
    assert_eq!(
        texts(&load.messages),
        (15..25).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_eq!(load.topic, "not yet in topics.json");

    // A topic alone brings a room back too, named as the topic's room.
    handle.topic(
        "quiet".into(),
        "Quiet".into(),
        "shh".into(),
        Default::default(),
    );
    let load = handle.load("quiet").unwrap().blocking_recv().unwrap();
    assert_eq!(
        (load.room.as_deref(), load.topic.as_str()),
        (Some("Quiet"), "shh")
    );
    assert!(load.messages.is_empty());
    handle.shutdown(Duration::from_secs(5));
    thread.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_load_of_a_room_never_written_is_empty() {
    let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
    let (store, _) = Store::open(&dir, 10).unwrap();
    let (handle, mut writer, _rx) = store.into_writer();
    let load = writer.load("nowhere");
    assert!(load.room.is_none() && load.messages.is_empty() && load.topic.is_empty());
    assert!(
        !dir.join("rooms").join(room_file_name("nowhere")).exists(),
        "looking makes no file"
    );
    drop((handle, writer));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rooms_privacy_is_kept_with_its_topic_and_old_entries_still_read() {
    let dir = std::env::temp_dir().join(format!("lanchat-store-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    // An entry as written before private rooms: no privacy fields.
    std::fs::write(
        dir.join("topics.json"),
        r#"{"old":{"room":"Old","topic":"from before"}}"#,
    )
    .unwrap();
    let (store, loaded) = Store::open(&dir, 10).unwrap();
    assert_eq!(
        loaded.topics,
        [("Old".to_owned(), "from before".to_owned())]
    );
    assert!(loaded.settings.is_empty());
    let (handle, mut writer, _rx) = store.into_writer();
    let vault = RoomSettings {
        invite_only: true,
        key: Some("k3y".into()),
        topic_lock: false,
        ops: vec!["ann".into()],
    };
    // No topic, but privacy: kept.
    handle.topic("vault".into(), "Vault".into(), String::new(), vault.clone());
    // Topic and privacy both gone: the entry goes.
    handle.topic(
        "old".into(),
        "Old".into(),
        String::new(),
        RoomSettings::default(),
    );
    assert_eq!(
        writer.load("vault").settings,
        vault,
        "pending, then read back"
    );
    assert_eq!(writer.load("vault").room.as_deref(), Some("Vault"));
    writer.tick();
    let text = std::fs::read_to_string(dir.join("topics.json")).unwrap();
    let map: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        map,
        serde_json::json!({"vault":{"room":"Vault","topic":"","invite_only":true,"key":"k3y","ops":["ann"]}})
    );
    drop((handle, writer));
    let (_store, loaded) = Store::open(&dir, 10).unwrap();
    assert_eq!(loaded.settings, [("Vault".to_owned(), vault)]);
    assert!(loaded.topics.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
