//! Rooms that come back from the data directory: the session waits for the load (outside the
//! chat lock), then applies the request once. Real time: the store's writer is a real thread.

use std::path::PathBuf;
use std::time::Duration;

use lanchat_protocol::{Limits, Message, ServerFrame};
use lanchat_server::store::{Store, StoreHandle};
use lanchat_server::{Config, Shared};
use serde_json::json;

use crate::support::Server;

/// A data directory that is removed at the end of the test.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> DataDir {
        DataDir(std::env::temp_dir().join(format!("lanchat-inproc-{}", uuid::Uuid::new_v4())))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A message line of room `Attic`, as the server stores it.
fn attic_line(text: &str) -> bytes::Bytes {
    ServerFrame::Message(Message {
        id: uuid::Uuid::now_v7().to_string(),
        ts: 1,
        room: "Attic".into(),
        from: "ann".into(),
        text: text.into(),
    })
    .encode_line()
}

/// A server whose store writer has just been handed `Attic`'s messages and topic: none of them
/// is in memory, and none need have reached the disk yet.
fn server_with_attic(dir: &DataDir, config: Config) -> (Server, StoreHandle) {
    let (store, _) = Store::open(&dir.0, 100).unwrap();
    let (handle, _thread) = store.start();
    for text in ["one", "two", "three"] {
        handle.append("attic".into(), attic_line(text));
    }
    handle.topic(
        "attic".into(),
        "Attic".into(),
        "old boxes".into(),
        Default::default(),
    );
    let shared = Shared::with_store(config, Some(handle.clone()));
    (Server::with_shared(shared), handle)
}

#[tokio::test]
async fn a_join_brings_the_room_back_from_disk_and_is_charged_once() {
    let dir = DataDir::new();
    // Registering takes one event and the join one: a second charge for the same join would
    // refuse it.
    let config = Config {
        limits: Limits {
            event_burst: Some(2),
            events_per_sec: Some(1),
            ..Limits::default()
        },
        ..Config::default()
    };
    let (mut server, _handle) = server_with_attic(&dir, config);
    let mut bob = server.registered("bob").await;
    // `who` never loads: the room is not held, so it has no members and is named as asked.
    bob.send(json!({"type":"who","id":1,"room":"ATTIC"})).await;
    let who = bob.expect_reply().await;
    assert_eq!(
        (&who["room"], &who["members"]),
        (&json!("ATTIC"), &json!([]))
    );

    bob.send(json!({"type":"join","id":2,"room":"attic"})).await;
    let joined = bob.expect_reply().await;
    assert_eq!(joined["type"], "ok", "{joined}");
    assert_eq!(
        (&joined["room"], &joined["topic"]),
        (&json!("Attic"), &json!("old boxes"))
    );
    // The budget held the registration and one join, and it is spent (it refills at one a
    // second).
    bob.send(json!({"type":"join","id":4,"room":"cellar"}))
        .await;
    assert_eq!(bob.expect_reply().await["code"], "rate_limited");
    bob.send(json!({"type":"history","id":3,"room":"attic"}))
        .await;
    let history = bob.expect_reply().await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
}

#[tokio::test]
async fn a_history_request_reads_a_room_back_without_joining_it() {
    let dir = DataDir::new();
    let (mut server, _handle) = server_with_attic(&dir, Config::default());
    let mut cy = server.registered("cy").await;
    cy.send(json!({"type":"history","id":1,"room":"ATTIC","limit":2}))
        .await;
    let history = cy.expect_reply().await;
    assert_eq!(history["room"], "Attic");
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
    cy.send(json!({"type":"topic","id":2,"room":"attic"})).await;
    assert_eq!(cy.expect_reply().await["topic"], "old boxes");
    // Not joined: still not listed.
    cy.send(json!({"type":"rooms","id":3})).await;
    assert_eq!(
        cy.expect_reply().await["rooms"],
        json!([{"name":"lobby","members":1,"topic":""}])
    );
}

#[tokio::test]
async fn a_load_that_cannot_be_made_does_not_stall_the_session() {
    let dir = DataDir::new();
    let (mut server, handle) = server_with_attic(&dir, Config::default());
    // The writer stops: loads are refused at once; the request goes on with the room empty.
    handle.shutdown(Duration::from_secs(5));
    let mut dan = server.registered("dan").await;
    dan.send(json!({"type":"join","id":1,"room":"attic"})).await;
    let joined = dan.expect_reply().await;
    assert_eq!(
        (&joined["type"], &joined["topic"]),
        (&json!("ok"), &json!(""))
    );
    dan.send(json!({"type":"ping","id":2})).await;
    assert_eq!(
        dan.expect_reply().await["cmd"],
        "ping",
        "the session goes on"
    );
}
