//! What a stream event does to a node's state and whom it reaches, without NATS.

use bytes::Bytes;
use lanchat_protocol::{HistoryQuery, RoomNick, ServerFrame};
use serde_json::Value;

use super::apply;
use crate::cluster::wire::Origin;
use crate::effects::{Audience, Delivery};
use crate::state::{Registered, State};

const ME: &str = "me";

fn origin(node: &str, except: u64) -> Origin {
    Origin {
        node: node.into(),
        except,
        deadline_ms: 0,
    }
}

fn join_line(room: &str, nick: &str) -> Bytes {
    ServerFrame::Join(RoomNick {
        room: room.into(),
        nick: nick.into(),
    })
    .encode_line()
}

fn message_line(id: &str, room: &str, from: &str, text: &str) -> Bytes {
    let line = format!(
        r#"{{"type":"message","id":"{id}","ts":1,"room":"{room}","from":"{from}","text":"{text}"}}"#
    );
    Bytes::from(line + "\n")
}

/// A clustered state with `ann` (session 1) in `lobby`.
fn with_ann() -> (State<()>, Registered) {
    let mut state = State::new("lobby", 10);
    state.set_clustered();
    let (ann, _) = state
        .register(1, "ann", (), Bytes::from_static(b"welcome\n"), true)
        .unwrap();
    (state, ann)
}

fn who(state: &State<()>, ann: &Registered, room: &str) -> Vec<String> {
    let line = state.who(ann, None, room).reply.unwrap();
    let v: Value = serde_json::from_slice(&line).unwrap();
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["nick"].as_str().unwrap().to_owned())
        .collect()
}

fn history_len(state: &State<()>, ann: &Registered, room: &str) -> usize {
    let q = HistoryQuery {
        room: room.into(),
        before: None,
        after: None,
        limit: None,
    };
    let line = state.history(ann, None, &q).unwrap().reply.unwrap();
    let v: Value = serde_json::from_slice(&line).unwrap();
    v["messages"].as_array().unwrap().len()
}

#[test]
fn another_node_s_join_lists_its_user_and_reaches_every_local_member() {
    let (mut state, ann) = with_ann();
    let line = join_line("lobby", "bob");
    let delivery = apply(
        &mut state,
        ME,
        Some("lobby".into()),
        &origin("b", 7),
        &line,
        true,
    );
    let Some(Delivery {
        to: Audience::Room { key, except },
        ..
    }) = delivery
    else {
        panic!("a room delivery: {delivery:?}")
    };
    assert_eq!((&*key, except), ("lobby", 0), "nobody here caused it");
    assert_eq!(who(&state, &ann, "lobby"), ["ann", "bob"]);
    // The same user leaving, then a quit of someone unknown: nothing listed, nothing breaks.
    let leave = Bytes::from_static(b"{\"type\":\"leave\",\"room\":\"lobby\",\"nick\":\"bob\"}\n");
    assert!(apply(
        &mut state,
        ME,
        Some("lobby".into()),
        &origin("b", 7),
        &leave,
        true
    )
    .is_some());
    assert_eq!(who(&state, &ann, "lobby"), ["ann"]);
}

#[test]
fn a_quit_from_another_node_reaches_those_who_shared_a_room() {
    let (mut state, ann) = with_ann();
    let join = join_line("lobby", "bob");
    let _ = apply(
        &mut state,
        ME,
        Some("lobby".into()),
        &origin("b", 7),
        &join,
        true,
    );
    let quit = Bytes::from_static(b"{\"type\":\"quit\",\"nick\":\"bob\",\"reason\":\"bye\"}\n");
    let delivery = apply(&mut state, ME, None, &origin("b", 7), &quit, true).unwrap();
    assert_eq!(delivery.to, Audience::Users(vec![1]));
    assert_eq!(who(&state, &ann, "lobby"), ["ann"]);
    // This node's own quit was delivered when it was made.
    assert!(apply(&mut state, ME, None, &origin(ME, 1), &quit, true).is_none());
}

#[test]
fn a_joiner_gets_no_event_from_before_its_own_join_came_back() {
    let (mut state, _ann) = with_ann();
    state.roster().arriving("lobby", 1);
    let msg = message_line(
        "01a22d37-653d-7342-b81d-ea2bd2e3fd95",
        "lobby",
        "bob",
        "early",
    );
    let delivery = apply(
        &mut state,
        ME,
        Some("lobby".into()),
        &origin("b", 7),
        &msg,
        true,
    );
    assert_eq!(delivery.unwrap().to, Audience::Users(vec![]));
    let own = join_line("lobby", "ann");
    let delivery = apply(
        &mut state,
        ME,
        Some("lobby".into()),
        &origin(ME, 1),
        &own,
        true,
    );
    let Some(Delivery {
        to: Audience::Room { except, .. },
        ..
    }) = delivery
    else {
        panic!("a room delivery")
    };
    assert_eq!(except, 1, "not to the joiner itself");
    assert!(state.roster().still_arriving("lobby").is_none());
}

#[test]
fn events_from_before_the_node_started_only_fill_history() {
    let (mut state, ann) = with_ann();
    let msg = message_line("01a22d37-653d-7342-b81d-ea2bd2e3fd95", "dev", "bob", "old");
    assert!(apply(
        &mut state,
        ME,
        Some("dev".into()),
        &origin("b", 7),
        &msg,
        false
    )
    .is_none());
    assert_eq!(history_len(&state, &ann, "dev"), 1);
    let join = join_line("dev", "bob");
    assert!(apply(
        &mut state,
        ME,
        Some("dev".into()),
        &origin("b", 7),
        &join,
        false
    )
    .is_none());
    assert!(
        who(&state, &ann, "dev").is_empty(),
        "members come from the nodes' answers"
    );
    // A message is kept whoever sent it, this node included: `say` does not keep it.
    let mine = message_line("01a22d37-653e-705d-ad70-ac99a3e63b66", "dev", "ann", "new");
    let _ = apply(
        &mut state,
        ME,
        Some("dev".into()),
        &origin(ME, 1),
        &mine,
        true,
    );
    assert_eq!(history_len(&state, &ann, "dev"), 2);
}

#[test]
fn a_line_that_is_not_an_event_changes_nothing() {
    let (mut state, ann) = with_ann();
    let junk = Bytes::from_static(b"not json\n");
    assert!(apply(
        &mut state,
        ME,
        Some("lobby".into()),
        &origin("b", 7),
        &junk,
        true
    )
    .is_none());
    let bad_id = message_line("not-a-uuid", "lobby", "bob", "x");
    assert!(apply(
        &mut state,
        ME,
        Some("lobby".into()),
        &origin("b", 7),
        &bad_id,
        true
    )
    .is_none());
    assert_eq!(history_len(&state, &ann, "lobby"), 0);
}

/// The `rooms` reply's (name, members) pairs and its `next`.
fn rooms(
    state: &State<()>,
    ann: &Registered,
    after: Option<&str>,
    limit: usize,
) -> (Vec<(String, u64)>, Value) {
    let line = state.rooms(ann, None, after, limit).reply.unwrap();
    let v: Value = serde_json::from_slice(&line).unwrap();
    let listed = v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap().to_owned();
            (name, r["members"].as_u64().unwrap())
        })
        .collect();
    (listed, v["next"].clone())
}

#[test]
fn rooms_lists_the_rooms_other_nodes_members_are_in_a_page_at_a_time() {
    let (mut state, ann) = with_ann();
    for (room, nick) in [
        ("dev", "bob"),
        ("ops", "cat"),
        ("dev", "dan"),
        ("lobby", "eve"),
    ] {
        let line = join_line(room, nick);
        let _ = apply(
            &mut state,
            ME,
            Some(room.into()),
            &origin("b", 7),
            &line,
            true,
        );
    }
    let (listed, next) = rooms(&state, &ann, None, 2);
    assert_eq!(listed, [("dev".into(), 2), ("lobby".into(), 2)]);
    assert_eq!(next, "lobby");
    let (listed, next) = rooms(&state, &ann, Some("lobby"), 2);
    assert_eq!(listed, [("ops".into(), 1)]);
    assert!(next.is_null(), "{next}");
    // The last remote member gone, the room is no longer listed.
    let leave = Bytes::from_static(b"{\"type\":\"leave\",\"room\":\"ops\",\"nick\":\"cat\"}\n");
    let _ = apply(
        &mut state,
        ME,
        Some("ops".into()),
        &origin("b", 7),
        &leave,
        true,
    );
    let (listed, _) = rooms(&state, &ann, None, 10);
    assert_eq!(listed, [("dev".into(), 2), ("lobby".into(), 2)]);
    // Made private on node b: listed to its members only, as on one node; ann is not one, but
    // is one of the lobby's, which she still sees when it goes private too.
    for room in ["dev", "lobby"] {
        let mode = format!(
            r#"{{"type":"mode","room":"{room}","by":"bob","invite_only":true,"has_key":false,"topic_lock":false}}"#
        );
        let line = Bytes::from(mode + "\n");
        let _ = apply(
            &mut state,
            ME,
            Some(room.into()),
            &origin("b", 7),
            &line,
            true,
        );
    }
    let (listed, _) = rooms(&state, &ann, None, 10);
    assert_eq!(listed, [("lobby".into(), 2)]);
    let open = Bytes::from_static(
        b"{\"type\":\"mode\",\"room\":\"dev\",\"by\":\"bob\",\"invite_only\":false,\"has_key\":false,\"topic_lock\":false}\n",
    );
    let _ = apply(
        &mut state,
        ME,
        Some("dev".into()),
        &origin("b", 7),
        &open,
        true,
    );
    let (listed, _) = rooms(&state, &ann, None, 10);
    assert_eq!(listed, [("dev".into(), 2), ("lobby".into(), 2)]);
}
