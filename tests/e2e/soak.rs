//! Soak: hundreds of clients doing random joins, leaves, says, DMs, nick and status changes,
//! disconnects and reconnects, with the rate limit off; then the invariants:
//! - every message that got `ok` reached, exactly once, every member that was in the room from
//!   before the send until after it, and every member saw each room's messages in one order
//!   (each client's messages per membership equal the slice of an observer's global order
//!   between that member's join and its leave or quit);
//! - every DM that got `ok` reached its recipient exactly once;
//! - no session leaks: the server reports 0 users at the end, and its memory is near its start.
//!
//! `LANCHAT_SOAK_SECS` (default 20) and `LANCHAT_SOAK_CLIENTS` (default 200) make a long run.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanchat_tests::{ServerProcess, TestClient};
use serde_json::{json, Value};

const ROOMS: [&str; 5] = ["lobby", "r1", "r2", "r3", "r4"];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Client index from a soak nick `c<idx>-<gen>`.
fn idx_of(nick: &str) -> Option<usize> {
    nick.strip_prefix('c')?.split('-').next()?.parse().ok()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What one client saw: per membership, the message ids in order; DMs; what it sent.
#[derive(Default)]
struct ClientLog {
    /// (room, ids) in the order memberships began.
    memberships: Vec<(String, Vec<String>)>,
    dms_received: Vec<String>,
    /// (dm id, recipient index) of every DM that got ok.
    dms_sent: Vec<(String, usize)>,
    says_ok: usize,
}

struct SoakClient {
    c: TestClient,
    log: ClientLog,
    /// Room -> index into `log.memberships` of the open membership.
    open: HashMap<String, usize>,
    next_id: u64,
}

impl SoakClient {
    fn handle(&mut self, v: &Value) {
        match v["type"].as_str().unwrap_or("") {
            "welcome" => self.open_membership("lobby"),
            // An attacker's message (the soak under attack) is not one of the soak's.
            "message" if idx_of(v["from"].as_str().unwrap_or("")).is_none() => {}
            "message" => {
                let room = v["room"].as_str().unwrap();
                let i = *self
                    .open
                    .get(room)
                    .unwrap_or_else(|| panic!("message for {room}, not joined: {v}"));
                self.log.memberships[i]
                    .1
                    .push(v["id"].as_str().unwrap().to_owned());
            }
            "direct" => self
                .log
                .dms_received
                .push(v["id"].as_str().unwrap().to_owned()),
            "ok" => match v["cmd"].as_str().unwrap_or("") {
                "join" => {
                    let room = v["room"].as_str().unwrap().to_owned();
                    if !self.open.contains_key(&room) {
                        self.open_membership(&room);
                    }
                }
                "leave" => {
                    self.open.remove(v["room"].as_str().unwrap());
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn open_membership(&mut self, room: &str) {
        self.log.memberships.push((room.to_owned(), Vec::new()));
        self.open
            .insert(room.to_owned(), self.log.memberships.len() - 1);
    }

    async fn request(&mut self, mut frame: Value) -> Value {
        self.next_id += 1;
        let id = json!(self.next_id);
        frame["id"] = id.clone();
        self.c.send(frame).await;
        loop {
            let v = self.c.recv().await;
            self.handle(&v);
            if v.get("re") == Some(&id) {
                return v;
            }
        }
    }

    /// Quit and read to EOF: everything queued before the session left the state arrives.
    async fn quit(mut self) -> ClientLog {
        self.c.send(json!({"type":"quit"})).await;
        for v in self.c.read_to_close().await {
            self.handle(&v);
        }
        self.log
    }
}

/// How the honest soak clients behave.
#[derive(Clone, Copy)]
struct Manner {
    /// Pause between two requests (a person's pace), or none (as fast as replies come).
    pace: Option<Duration>,
    /// Each client from an address of its own (`127.0.1.<idx>`, then `127.0.2.x`...), for
    /// per-address budgets; otherwise all from 127.0.0.1.
    own_address: bool,
}

async fn run_client(
    idx: usize,
    addr: SocketAddr,
    deadline: Instant,
    nicks: Arc<Mutex<Vec<String>>>,
    manner: Manner,
) -> ClientLog {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (idx as u64 + 1).wrapping_mul(0x1000_0001));
    let mut total = ClientLog::default();
    let mut gen = 0;
    while Instant::now() < deadline {
        let nick = format!("c{idx}-{gen}");
        gen += 1;
        let c = match manner.own_address {
            true => {
                let ip = [127, 0, 1 + (idx / 250) as u8, 1 + (idx % 250) as u8];
                TestClient::connect_from(addr, ip.into()).await
            }
            false => TestClient::connect(addr).await,
        };
        let mut s = SoakClient {
            c,
            log: ClientLog::default(),
            open: HashMap::new(),
            next_id: 0,
        };
        let w = s.request(json!({"type":"hello","nick":nick})).await;
        assert_eq!(w["type"], "welcome", "{w}");
        nicks.lock().unwrap()[idx] = nick;
        while Instant::now() < deadline {
            if let Some(pace) = manner.pace {
                // Pacing, not synchronisation: a person does not type faster than this.
                tokio::time::sleep(pace).await;
            }
            let roll = rng.below(100);
            if roll < 45 {
                let joined: Vec<String> = s.open.keys().cloned().collect();
                if joined.is_empty() {
                    continue;
                }
                let room = &joined[rng.below(joined.len())];
                let ok = s
                    .request(
                        json!({"type":"say","room":room,"text":format!("{idx} {}", rng.next())}),
                    )
                    .await;
                assert_eq!(ok["cmd"], "say", "{ok}");
                s.log.says_ok += 1;
            } else if roll < 60 {
                let room = ROOMS[rng.below(ROOMS.len())];
                let ok = s.request(json!({"type":"join","room":room})).await;
                assert_eq!(ok["cmd"], "join", "{ok}");
            } else if roll < 70 {
                let room = ROOMS[rng.below(ROOMS.len())];
                let r = s.request(json!({"type":"leave","room":room})).await;
                assert!(r["cmd"] == "leave" || r["code"] == "not_in_room", "{r}");
            } else if roll < 82 {
                let to = {
                    let nicks = nicks.lock().unwrap();
                    nicks[rng.below(nicks.len())].clone()
                };
                if to.is_empty() {
                    continue;
                }
                let r = s.request(json!({"type":"dm","to":to,"text":"psst"})).await;
                if r["type"] == "ok" {
                    s.log
                        .dms_sent
                        .push((r["id"].as_str().unwrap().to_owned(), idx_of(&to).unwrap()));
                } else {
                    assert_eq!(r["code"], "no_such_nick", "{r}");
                }
            } else if roll < 88 {
                let new = format!("c{idx}-{gen}");
                gen += 1;
                let r = s.request(json!({"type":"nick","nick":new})).await;
                assert_eq!(r["cmd"], "nick", "{r}");
                nicks.lock().unwrap()[idx] = new;
            } else if roll < 96 {
                let status = ["online", "away", "busy"][rng.below(3)];
                let r = s
                    .request(json!({"type":"status","status":status,"text":"soaking"}))
                    .await;
                assert_eq!(r["cmd"], "status", "{r}");
            } else {
                break; // disconnect, and reconnect
            }
        }
        nicks.lock().unwrap()[idx] = String::new();
        let log = s.quit().await;
        total.memberships.extend(log.memberships);
        total.dms_received.extend(log.dms_received);
        total.dms_sent.extend(log.dms_sent);
        total.says_ok += log.says_ok;
    }
    total
}

enum Seen {
    Msg {
        room: String,
        id: String,
        from: usize,
    },
    Join {
        room: String,
        idx: usize,
    },
    Leave {
        room: String,
        idx: usize,
    },
    Quit {
        idx: usize,
    },
}

/// The users count from a discovery answer.
fn users_via_discover(port: u16) -> u64 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..20 {
        sock.send_to(br#"{"type":"discover","protocol":1}"#, ("127.0.0.1", port))
            .unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let v: Value = serde_json::from_slice(&buf[..n]).unwrap();
            return v["users"].as_u64().unwrap();
        }
    }
    panic!("no answer to discover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_invariants_hold() {
    let secs = env_or("LANCHAT_SOAK_SECS", 20);
    let n = env_or("LANCHAT_SOAK_CLIENTS", 200) as usize;
    let manner = Manner {
        pace: None,
        own_address: false,
    };
    soak(
        secs,
        n,
        &["--rate-per-sec", "0", "--max-per-ip", "100000"],
        manner,
        false,
    )
    .await;
}

/// The same invariants for honest clients at a person's pace, each from an address of its own,
/// with the default limits on, while attackers flood the lobby (every attack of
/// `lanchat_tests::abuse` a client can make, from `127.0.<10..>.x`) for the whole run: nobody
/// honest is refused, limited, dropped, or misses or reorders a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_invariants_hold_under_attack() {
    let secs = env_or("LANCHAT_SOAK_ATTACK_SECS", 12);
    let n = env_or("LANCHAT_SOAK_ATTACK_CLIENTS", 100) as usize;
    let manner = Manner {
        // 5 requests a second at most: never over a message or events budget.
        pace: Some(Duration::from_millis(200)),
        own_address: true,
    };
    soak(secs, n, &["--max-rooms", "2000"], manner, true).await;
}

/// Attack the lobby for `dur`, every attack at once, each from its own addresses.
async fn attackers(addr: SocketAddr, udp: u16, dur: Duration) {
    use lanchat_tests::abuse::{attacks, Target};
    let mut t = Target::new(addr);
    t.udp = Some(SocketAddr::from(([127, 0, 0, 1], udp)));
    let outcomes = tokio::join!(
        attacks::reconnect_flood(&t, dur, 10),
        attacks::event_flood(&t, dur, 12),
        attacks::history_amplification(&t, dur, 14),
        attacks::room_flood(&t, dur, 16, 4),
        attacks::rooms_flood(&t, dur, 18),
        attacks::stalled_readers(&t, dur, 20, 16),
        attacks::discover_flood(&t, dur, 22),
    );
    let (a, b, c, d, e, f, g) = outcomes;
    for o in [a, b, c, d, e, f, g] {
        eprintln!("soak attacker {}", o.summary());
    }
}

async fn soak(secs: u64, n: usize, args: &[&str], manner: Manner, attacked: bool) {
    let udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let udp_arg = udp.to_string();
    let mut all = vec![
        "--listen",
        "127.0.0.1:0",
        "--announce-port",
        &udp_arg,
        "--announce-interval",
        "3600",
        "--history",
        "50",
    ];
    all.extend_from_slice(args);
    let server = ServerProcess::start_raw(&all);
    let addr = server.addr;
    let (mut observer, _) = TestClient::hello(addr, "observer").await;
    for room in &ROOMS[1..] {
        observer.request(json!({"type":"join","room":room})).await;
    }
    let rss_start = server.rss_kib();
    let observing = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let v = observer.recv().await;
            let nick = |k: &str| idx_of(v[k].as_str().unwrap_or(""));
            match v["type"].as_str().unwrap_or("") {
                "message" if v["from"] == "marker" => break,
                "message" if nick("from").is_none() => {}
                "message" => seen.push(Seen::Msg {
                    room: v["room"].as_str().unwrap().to_owned(),
                    id: v["id"].as_str().unwrap().to_owned(),
                    from: nick("from").unwrap(),
                }),
                // The marker's own join is not a soak client's.
                "join" | "leave" if nick("nick").is_none() => {}
                "join" => seen.push(Seen::Join {
                    room: v["room"].as_str().unwrap().to_owned(),
                    idx: nick("nick").unwrap(),
                }),
                "leave" => seen.push(Seen::Leave {
                    room: v["room"].as_str().unwrap().to_owned(),
                    idx: nick("nick").unwrap(),
                }),
                "quit" => {
                    if let Some(idx) = nick("nick") {
                        seen.push(Seen::Quit { idx })
                    }
                }
                "ping" => observer.send(json!({"type":"pong"})).await,
                _ => {}
            }
        }
        (seen, observer)
    });

    let deadline = Instant::now() + Duration::from_secs(secs);
    let nicks = Arc::new(Mutex::new(vec![String::new(); n]));
    let mut tasks = Vec::new();
    for idx in 0..n {
        let nicks = nicks.clone();
        tasks.push(tokio::spawn(run_client(idx, addr, deadline, nicks, manner)));
    }
    let attacking = attacked.then(|| tokio::spawn(attackers(addr, udp, Duration::from_secs(secs))));
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(
            tokio::time::timeout(Duration::from_secs(secs + 60), t)
                .await
                .expect("client finished")
                .unwrap(),
        );
    }
    if let Some(attacking) = attacking {
        tokio::time::timeout(Duration::from_secs(secs + 60), attacking)
            .await
            .expect("attacks end by themselves")
            .unwrap();
    }
    // Every client has quit and read to EOF; the marker's message comes after all their events.
    let (mut marker, _) = TestClient::hello(addr, "marker").await;
    marker
        .request(json!({"type":"say","room":"lobby","text":"end"}))
        .await;
    let (seen, mut observer) = tokio::time::timeout(Duration::from_secs(60), observing)
        .await
        .unwrap()
        .unwrap();

    // Expected messages per (client, room) membership, from the observer's global order.
    let mut open: HashMap<String, HashMap<usize, Vec<String>>> = HashMap::new();
    let mut expected: HashMap<(usize, String), Vec<Vec<String>>> = HashMap::new();
    let mut messages = 0;
    for s in &seen {
        match s {
            Seen::Join { room, idx } => {
                let prev = open
                    .entry(room.clone())
                    .or_default()
                    .insert(*idx, Vec::new());
                assert!(prev.is_none(), "c{idx} joined {room} twice");
            }
            Seen::Msg { room, id, from } => {
                messages += 1;
                for (idx, ids) in open.entry(room.clone()).or_default().iter_mut() {
                    if idx != from {
                        ids.push(id.clone());
                    }
                }
            }
            Seen::Leave { room, idx } => {
                let ids = open
                    .get_mut(room)
                    .and_then(|m| m.remove(idx))
                    .expect("leave after join");
                expected.entry((*idx, room.clone())).or_default().push(ids);
            }
            Seen::Quit { idx } => {
                for (room, members) in open.iter_mut() {
                    if let Some(ids) = members.remove(idx) {
                        expected.entry((*idx, room.clone())).or_default().push(ids);
                    }
                }
            }
        }
    }
    assert!(
        open.values().all(|m| m.is_empty()),
        "memberships never closed"
    );

    let mut deliveries = 0;
    let mut dms_expected: HashMap<usize, Vec<String>> = HashMap::new();
    for log in &logs {
        for (id, to) in &log.dms_sent {
            dms_expected.entry(*to).or_default().push(id.clone());
        }
    }
    let says: usize = logs.iter().map(|l| l.says_ok).sum();
    assert_eq!(says, messages, "the observer saw every ok'ed message once");
    for (idx, log) in logs.iter().enumerate() {
        let mut got: HashMap<String, Vec<Vec<String>>> = HashMap::new();
        for (room, ids) in &log.memberships {
            deliveries += ids.len();
            got.entry(room.clone()).or_default().push(ids.clone());
        }
        for room in ROOMS {
            let want = expected.remove(&(idx, room.to_owned())).unwrap_or_default();
            let have = got.remove(room).unwrap_or_default();
            assert_eq!(have.len(), want.len(), "c{idx} memberships of {room}");
            for (k, (h, w)) in have.iter().zip(&want).enumerate() {
                assert!(
                    h == w,
                    "c{idx} membership {k} of {room}: got {} messages, expected {}",
                    h.len(),
                    w.len()
                );
            }
        }
        let mut received: Vec<String> = log.dms_received.clone();
        let unique: HashSet<_> = received.iter().cloned().collect();
        assert_eq!(unique.len(), received.len(), "c{idx}: a DM arrived twice");
        received.sort();
        let mut want = dms_expected.remove(&idx).unwrap_or_default();
        want.sort();
        assert_eq!(
            received, want,
            "c{idx}: DMs ok'ed to it are exactly those it got"
        );
    }

    observer.send(json!({"type":"quit"})).await;
    observer.read_to_close().await;
    marker.send(json!({"type":"quit"})).await;
    marker.read_to_close().await;
    assert_eq!(users_via_discover(udp), 0, "no session leaked");
    let rss_end = server.rss_kib();
    let dms: usize = logs.iter().map(|l| l.dms_sent.len()).sum();
    eprintln!(
        "soak: {n} clients, {secs} s, {messages} messages, {deliveries} deliveries, {dms} DMs; \
         server RSS {rss_start} KiB at start, {rss_end} KiB at end"
    );
    assert!(
        rss_end <= rss_start + 48 * 1024,
        "RSS {rss_end} KiB vs {rss_start} KiB at start"
    );
}
