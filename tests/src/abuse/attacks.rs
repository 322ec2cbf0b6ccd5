//! The attacks of issue 14, one function per finding that a client can reproduce over the wire.
//! Each runs for `dur` at most (plus the few seconds its last replies may take) from attacker
//! addresses `127.0.<block>.x`, and counts what the server let through. (Findings 4, 11 and 12
//! need the server's files and log, so their tests live in `tests/e2e/durable.rs` and
//! `tests/e2e/hygiene.rs`.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{json, Value};

use super::{attacker_ip, Conn, Outcome, Target};

/// How long the replies to one pipelined batch may take.
const REPLIES: Duration = Duration::from_secs(5);

/// Send `frames` in one write (ids 0..n are set here), then read until each has its reply, the
/// session ends, or [`REPLIES`] pass. Returns the replies and every other frame's type counted
/// into `out` (`event`), and whether the session ended (`bye_<reason>` or `closed` counted).
async fn pipeline(c: &mut Conn, frames: Vec<Value>, out: &mut Outcome) -> (Vec<Value>, bool) {
    let n = frames.len();
    for (i, mut f) in frames.into_iter().enumerate() {
        f["id"] = json!(i);
        out.add("request_bytes", f.to_string().len() as u64 + 1);
        if c.feed(&f).await.is_err() {
            out.add("closed", 1);
            return (Vec::new(), true);
        }
    }
    if c.flush().await.is_err() {
        out.add("closed", 1);
        return (Vec::new(), true);
    }
    let deadline = Instant::now() + REPLIES;
    let mut replies = Vec::new();
    while replies.len() < n {
        let Some(line) = c
            .next_line(deadline.saturating_duration_since(Instant::now()))
            .await
        else {
            out.add("closed", 1);
            return (replies, true);
        };
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        match v["type"].as_str().unwrap_or("") {
            "bye" => {
                out.add(&bye_key(&v), 1);
                return (replies, true);
            }
            "ping" => {
                let _ = c.send(&json!({"type": "pong"})).await;
            }
            _ if v.get("re").is_some() => {
                out.add("reply_bytes", line.len() as u64 + 1);
                match v["type"].as_str() {
                    Some("ok") => {
                        out.add("accepted", 1);
                        out.add("ok_bytes", line.len() as u64 + 1);
                        out.add(&format!("ok_{}", v["cmd"].as_str().unwrap_or("?")), 1);
                    }
                    Some("welcome") => out.add("welcome", 1),
                    _ => out.add(&error_key(&v), 1),
                }
                replies.push(v);
            }
            _ => out.add("event", 1),
        }
    }
    (replies, false)
}

fn bye_key(v: &Value) -> String {
    format!("bye_{}", v["reason"].as_str().unwrap_or("?"))
}

fn error_key(v: &Value) -> String {
    v["code"].as_str().unwrap_or("bad_reply").to_owned()
}

/// Run `round` until `dur` has passed; the outcome's `secs` is the time it took.
async fn for_a_while<F, Fut>(
    finding: u8,
    name: &'static str,
    dur: Duration,
    mut round: F,
) -> Outcome
where
    F: FnMut(Outcome, u64) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let start = Instant::now();
    let mut out = Outcome::new(finding, name);
    let mut k = 0;
    while start.elapsed() < dur {
        out = round(out, k).await;
        k += 1;
    }
    out.secs = start.elapsed().as_secs_f64();
    out
}

/// Finding 1: reconnect, and say 50 messages each time, hoping for a full bucket every time.
pub async fn reconnect_flood(t: &Target, dur: Duration, block: u8) -> Outcome {
    let from = Some(attacker_ip(block, 1));
    for_a_while(1, "reconnect_flood", dur, |mut out, k| async move {
        match Conn::register(t, from, &format!("rf{block}x{k}")).await {
            Ok(mut c) => {
                out.add("connections", 1);
                let says = (0..50)
                    .map(|i| json!({"type": "say", "room": t.room, "text": format!("spam {i}")}))
                    .collect();
                pipeline(&mut c, says, &mut out).await;
            }
            Err(_) => out.add("refused", 1),
        }
        out
    })
    .await
}

/// One attacker session sending `batch(round)` pipelined, round after round, and registering
/// again (as `<prefix><round>`) whenever the server ends the session.
async fn session_flood(
    t: &Target,
    dur: Duration,
    block: u8,
    (finding, name, prefix): (u8, &'static str, &str),
    batch: impl Fn(u64) -> Vec<Value>,
) -> Outcome {
    let from = Some(attacker_ip(block, 1));
    let start = Instant::now();
    let mut out = Outcome::new(finding, name);
    let mut conn: Option<Conn> = None;
    let mut round = 0;
    while start.elapsed() < dur {
        round += 1;
        let c = match &mut conn {
            Some(c) => c,
            None => match Conn::register(t, from, &format!("{prefix}{block}x{round}")).await {
                Ok(c) => {
                    out.add("connections", 1);
                    conn.insert(c)
                }
                Err(_) => {
                    out.add("refused", 1);
                    continue;
                }
            },
        };
        if pipeline(c, batch(round), &mut out).await.1 {
            conn = None;
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    out
}

/// Finding 2: requests that tell every room-mate (status, nick, topic, join, leave), pipelined,
/// reconnecting whenever the server ends the session.
pub async fn event_flood(t: &Target, dur: Duration, block: u8) -> Outcome {
    session_flood(t, dur, block, (2, "event_flood", "ev"), |round| {
        let mut frames = Vec::new();
        for i in 0..10 {
            let status = ["away", "online"][i % 2];
            frames.push(json!({"type": "status", "status": status, "text": "brb"}));
            frames.push(json!({"type": "nick", "nick": format!("ev{block}n{round}y{i}")}));
            frames.push(json!({"type": "topic", "room": t.room, "topic": format!("t{i}")}));
            frames.push(json!({"type": "join", "room": format!("ev{block}")}));
            frames.push(json!({"type": "leave", "room": format!("ev{block}")}));
        }
        frames
    })
    .await
}

/// Finding 2 too: `history limit 200` pipelined, 20 at a time: reply bytes per request byte.
pub async fn history_amplification(t: &Target, dur: Duration, block: u8) -> Outcome {
    session_flood(t, dur, block, (2, "history_amplification", "ha"), |_| {
        (0..20)
            .map(|_| json!({"type": "history", "room": t.room, "limit": 200}))
            .collect()
    })
    .await
}

/// Finding 3: make rooms, each with a message, from `addrs` addresses at once.
pub async fn room_flood(t: &Target, dur: Duration, block: u8, addrs: u8) -> Outcome {
    let runs = (1..=addrs).map(|a| async move {
        let from = Some(attacker_ip(block, a));
        for_a_while(3, "room_flood", dur, |mut out, k| async move {
            let Ok(mut c) = Conn::register(t, from, &format!("rm{block}x{a}x{k}")).await else {
                out.add("refused", 1);
                return out;
            };
            let mut frames = Vec::new();
            for i in 0..50 {
                let room = format!("rm{block}x{a}x{k}x{i}");
                frames.push(json!({"type": "join", "room": room}));
                frames.push(json!({"type": "say", "room": room, "text": "mine"}));
            }
            pipeline(&mut c, frames, &mut out).await;
            out
        })
        .await
    });
    merge(3, "room_flood", join_all(runs).await)
}

/// Finding 5: `rooms` requests pipelined (a list that scanned every room ever made).
pub async fn rooms_flood(t: &Target, dur: Duration, block: u8) -> Outcome {
    session_flood(t, dur, block, (5, "rooms_flood", "rl"), |_| {
        (0..20).map(|_| json!({"type": "rooms"})).collect()
    })
    .await
}

/// Findings 5 and 10: `discover` datagrams as fast as one socket sends them (at most 50,000),
/// with the answers counted: answers per second and bytes out per byte in.
pub async fn discover_flood(t: &Target, dur: Duration, block: u8) -> Outcome {
    let mut out = Outcome::new(10, "discover_flood");
    let Some(udp) = t.udp else {
        return out;
    };
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(attacker_ip(block, 1), 0))
        .await
        .expect("bind an attacker UDP socket");
    let query = br#"{"type":"discover","protocol":1}"#;
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    let (mut sent, mut largest) = (0u64, 0u64);
    while start.elapsed() < dur && sent < 50_000 {
        if socket.send_to(query, udp).await.is_ok() {
            sent += 1;
            out.add("query_bytes", query.len() as u64);
        }
        while let Ok((n, _)) = socket.try_recv_from(&mut buf) {
            out.add("answers", 1);
            out.add("answer_bytes", n as u64);
            largest = largest.max(n as u64);
        }
        if sent % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Answers still in flight.
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
    {
        out.add("answers", 1);
        out.add("answer_bytes", n as u64);
    }
    out.add("queries", sent);
    out.add("largest_answer", largest);
    out.secs = start.elapsed().as_secs_f64();
    out
}

/// Finding 6: `n` sessions from one address ask for 60 history replies each (about 3.6 MB with
/// 200 messages of 300 bytes in the room: under the 4 MiB a session may have queued, so nobody
/// is dropped for it) and never read them. What the server holds meanwhile is the figure (the
/// scenario samples its memory).
pub async fn stalled_readers(t: &Target, dur: Duration, block: u8, n: usize) -> Outcome {
    let mut out = Outcome::new(6, "stalled_readers");
    let start = Instant::now();
    let from = Some(attacker_ip(block, 1));
    let mut conns = Vec::new();
    for i in 0..n {
        match Conn::register(t, from, &format!("sr{block}x{i}")).await {
            Ok(mut c) => {
                for _ in 0..60 {
                    let h = json!({"type": "history", "room": t.room, "limit": 200});
                    if c.feed(&h).await.is_err() {
                        break;
                    }
                }
                let _ = c.flush().await;
                conns.push(c);
            }
            Err(_) => out.add("refused", 1),
        }
    }
    out.add("sessions", conns.len() as u64);
    // Held, unread, for the rest of the attack: the server's memory meanwhile is the figure.
    tokio::time::sleep(dur.saturating_sub(start.elapsed())).await;
    drop(conns);
    out.secs = start.elapsed().as_secs_f64();
    out
}

/// Finding 7: from `addrs` addresses, connect `per_addr` sockets each and never say hello.
/// Returns the sockets (held until dropped) and counts those the server refused at once.
pub async fn slot_exhaustion(
    t: &Target,
    block: u8,
    addrs: u8,
    per_addr: usize,
) -> (Outcome, Vec<Conn>) {
    let mut out = Outcome::new(7, "slot_exhaustion");
    let start = Instant::now();
    let mut held = Vec::new();
    for a in 1..=addrs {
        for _ in 0..per_addr {
            match Conn::connect_from(t.addr, Some(attacker_ip(block, a))).await {
                Ok(c) => held.push(c),
                Err(_) => out.add("connect_failed", 1),
            }
        }
    }
    out.add("sockets", held.len() as u64);
    // A refused socket gets `error server_full` and `bye` at once; a held one gets nothing.
    let refused = join_all(held.iter_mut().map(|c| async move {
        matches!(c.next(Duration::from_millis(500)).await, Some(v) if v["code"] == "server_full")
    }))
    .await;
    let n = refused.iter().filter(|r| **r).count() as u64;
    out.add("refused", n);
    out.add("held", held.len() as u64 - n);
    out.secs = start.elapsed().as_secs_f64();
    (out, held)
}

/// Finding 8: guess the password, reconnecting after each `auth_failed`.
pub async fn password_guessing(t: &Target, dur: Duration, block: u8) -> Outcome {
    let from = Some(attacker_ip(block, 1));
    for_a_while(8, "password_guessing", dur, |mut out, k| async move {
        let Ok(mut c) = Conn::connect_from(t.addr, from).await else {
            out.add("connect_failed", 1);
            return out;
        };
        let hello =
            json!({"type": "hello", "nick": format!("pg{k}"), "password": format!("guess{k}")});
        let (replies, _) = pipeline(&mut c, vec![hello], &mut out).await;
        if let Some(r) = replies.first() {
            if r["code"] == "auth_failed"
                && r["message"].as_str().unwrap_or("").contains("too many")
            {
                out.add("throttled", 1);
            } else if r["code"] == "auth_failed" {
                out.add("guesses_checked", 1);
            }
        }
        out
    })
    .await
}

/// Finding 9: register lookalikes of `nick` (Cyrillic letters, fullwidth, mathematical bold, a
/// Hangul filler appended); counts those accepted.
pub async fn lookalike_nicks(t: &Target, nick: &str, block: u8) -> Outcome {
    let mut out = Outcome::new(9, "lookalike_nicks");
    let start = Instant::now();
    let cyrillic: String = nick
        .chars()
        .map(|c| match c {
            'a' => 'а',
            'e' => 'е',
            'o' => 'о',
            'c' => 'с',
            'p' => 'р',
            other => other,
        })
        .collect();
    let fullwidth: String = nick
        .chars()
        .map(|c| match c {
            'a'..='z' => char::from_u32(c as u32 - 'a' as u32 + 0xFF41).unwrap_or(c),
            other => other,
        })
        .collect();
    let bold: String = nick
        .chars()
        .map(|c| match c {
            'a'..='z' => char::from_u32(c as u32 - 'a' as u32 + 0x1D41A).unwrap_or(c),
            other => other,
        })
        .collect();
    let filler = format!("{nick}\u{3164}");
    for (i, lookalike) in [cyrillic, fullwidth, bold, filler].iter().enumerate() {
        let from = Some(attacker_ip(block, 1 + i as u8));
        out.add("tried", 1);
        match Conn::register(t, from, lookalike).await {
            Ok(_) => out.add("accepted", 1),
            Err(why) => {
                let v: Value = serde_json::from_str(&why).unwrap_or_default();
                out.add(&error_key(&v), 1);
            }
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    out
}

/// Several runs of one attack as one outcome.
fn merge(finding: u8, name: &'static str, runs: Vec<Outcome>) -> Outcome {
    let mut out = Outcome::new(finding, name);
    for run in runs {
        out.secs = out.secs.max(run.secs);
        for (k, v) in run.counts {
            out.add(&k, v);
        }
    }
    out
}
