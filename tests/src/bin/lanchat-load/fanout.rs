//! The fan-out and mixed scenarios: rooms of members, some of which send; receivers check every
//! sender's sequence and record delivery latency; optional direct messages and members that
//! keep leaving and re-joining (the mixed scenario).
//!
//! One task per connection. A sender keeps at most `window` messages in flight: sent but not
//! yet acknowledged (lanchat `ok`, RESP integer reply; for IRC, which acknowledges nothing, a
//! message counts as acknowledged once the room's witness member received it). With `rate`,
//! messages are also paced to a schedule. Only the run phase is measured: connections, joins
//! and the join-event storm they cause happen before the clock starts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::conn::{Conn, Oper};
use crate::measure::{new_histogram, self_cpu_s, server_cpu, SyscallCount};
use crate::proto::{now_ns, write_payload, Event, Payload, Proto};

#[derive(Debug, Clone)]
pub struct Config {
    pub proto: Proto,
    pub addr: SocketAddr,
    pub rooms: usize,
    pub members: usize,
    pub senders: usize,
    /// Messages per sender.
    pub messages: u64,
    /// Total messages per second over all senders; `None` = as fast as the window allows.
    pub rate: Option<f64>,
    pub window: u64,
    /// Message text size in bytes.
    pub size: usize,
    /// Every Nth message of a sender is a direct message to a receiver of its room (0 = none).
    pub dm_every: u64,
    /// Extra connections per room that leave and re-join during the run.
    pub churners: usize,
    pub churn_pause: Duration,
    pub timeout: Duration,
    pub prefix: String,
    pub server_pid: Option<u32>,
    /// Further server processes (the other nodes of a cluster, its broker): their CPU time counts
    /// as the server's.
    pub also_pids: Vec<u32>,
    /// Further addresses of the same chat (the other nodes of a cluster): connections are spread
    /// over `addr` and these in turn.
    pub nodes: Vec<SocketAddr>,
    pub connect_concurrency: usize,
    pub read_buffer: usize,
    /// Each message in its own write() (a real client), not a sender's batch in one.
    pub write_each: bool,
    /// Count the server's sends and event-loop turns with `perf` (needs `server_pid`).
    pub count_syscalls: bool,
    pub oper: Option<Oper>,
    /// Pause between the end of setup and the start of the clock, so that the join events of
    /// the setup are drained and not measured.
    pub settle: Duration,
    /// Start the clock at this Unix time (ms) rather than right after setup, so that several
    /// generator processes measure the same interval.
    pub start_at_unix_ms: Option<u64>,
    /// Connect over TLS with this (pinned) configuration.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Every connection a WebSocket (`--ws`).
    pub websocket: bool,
}

/// Percentiles reported for latency plots.
const PLOT_PERCENTILES: [f64; 16] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 98.0, 99.0, 99.5, 99.8, 99.9, 99.95, 99.98, 99.99,
    100.0,
];

/// The role of one connection.
struct Plan {
    nick: String,
    room: String,
    /// Joined the room and its deliveries are checked.
    member: bool,
    sender: Option<SenderPlan>,
    /// Deliveries this connection must receive.
    expected: u64,
    /// IRC: reports what it receives as acknowledgements to the senders.
    witness: bool,
    churner: bool,
    /// Redis: also subscribes to the channel named like itself, for direct messages.
    dm_channel: bool,
}

struct SenderPlan {
    sid: u32,
    /// The receivers of its room, direct message targets in rotation.
    dm_targets: Arc<Vec<String>>,
}

/// State shared by every connection task of a run.
struct Shared {
    cfg: Config,
    senders_total: u32,
    setup: Semaphore,
    go: CancellationToken,
    stop: CancellationToken,
    t0_ns: AtomicU64,
    /// Connections that have not yet reached their goal (all sent and acknowledged, all
    /// expected deliveries received).
    remaining: AtomicUsize,
    all_done: Notify,
    /// IRC witness acknowledgements: the highest sequence seen per sender, and a wake-up.
    witness_seq: Vec<AtomicU64>,
    witness_wake: Vec<Notify>,
}

#[derive(Default)]
struct ConnStats {
    member: bool,
    expected: u64,
    deliveries: u64,
    duplicated: u64,
    reordered: u64,
    untracked_deliveries: u64,
    sent: u64,
    errors: u64,
    first_error: Option<String>,
    closed_early: bool,
    last_delivery_ns: u64,
    churn_ops: u64,
    hist: Option<Histogram<u64>>,
}

impl ConnStats {
    fn unique(&self) -> u64 {
        self.deliveries - self.duplicated
    }
}

fn plans(cfg: &Config) -> anyhow::Result<Vec<Plan>> {
    let p = cfg.proto;
    anyhow::ensure!(cfg.rooms > 0 && cfg.members > 0, "need rooms and members");
    if p.senders_are_members() {
        anyhow::ensure!(
            cfg.senders < cfg.members,
            "senders are members: need more members than senders (a receiver per room)"
        );
    }
    let dms_per_sender = cfg.messages.checked_div(cfg.dm_every).unwrap_or(0);
    let room_msgs_per_sender = cfg.messages - dms_per_sender;
    let mut plans = Vec::new();
    for j in 0..cfg.rooms {
        let room = format!("{}r{j}", cfg.prefix);
        let first = plans.len();
        let mut receivers = Vec::new();
        for i in 0..cfg.members {
            let is_sender = p.senders_are_members() && i < cfg.senders;
            if !is_sender {
                receivers.push(plans.len());
            }
            plans.push(Plan {
                nick: format!("{}{j}m{i}", cfg.prefix),
                room: room.clone(),
                member: true,
                sender: None,
                expected: (cfg.senders as u64 - u64::from(is_sender)) * room_msgs_per_sender,
                witness: false,
                churner: false,
                dm_channel: p == Proto::Redis && cfg.dm_every > 0,
            });
        }
        let targets = Arc::new(
            receivers
                .iter()
                .map(|&r| plans[r].nick.clone())
                .collect::<Vec<_>>(),
        );
        for i in 0..cfg.senders {
            let sid = (j * cfg.senders + i) as u32;
            let plan_idx = if p.senders_are_members() {
                first + i
            } else {
                plans.push(Plan {
                    nick: format!("{}{j}p{i}", cfg.prefix),
                    room: room.clone(),
                    member: false,
                    sender: None,
                    expected: 0,
                    witness: false,
                    churner: false,
                    dm_channel: false,
                });
                plans.len() - 1
            };
            plans[plan_idx].sender = Some(SenderPlan {
                sid,
                dm_targets: targets.clone(),
            });
            for d in 0..dms_per_sender {
                let r = receivers[((d + u64::from(sid)) % receivers.len() as u64) as usize];
                plans[r].expected += 1;
            }
        }
        if p == Proto::Irc {
            plans[receivers[0]].witness = true;
        }
        for i in 0..cfg.churners {
            plans.push(Plan {
                nick: format!("{}{j}c{i}", cfg.prefix),
                room: room.clone(),
                member: false,
                sender: None,
                expected: 0,
                witness: false,
                churner: true,
                dm_channel: false,
            });
        }
    }
    Ok(plans)
}

/// Run the scenario and return its report.
pub async fn run(cfg: Config, scenario: &str) -> anyhow::Result<serde_json::Value> {
    let plans = plans(&cfg)?;
    let senders_total = (cfg.rooms * cfg.senders) as u32;
    let n = plans.len();
    let shared = Arc::new(Shared {
        senders_total,
        setup: Semaphore::new(cfg.connect_concurrency.max(1)),
        go: CancellationToken::new(),
        stop: CancellationToken::new(),
        t0_ns: AtomicU64::new(0),
        remaining: AtomicUsize::new(plans.iter().filter(|p| !p.churner).count()),
        all_done: Notify::new(),
        witness_seq: (0..senders_total).map(|_| AtomicU64::new(0)).collect(),
        witness_wake: (0..senders_total).map(|_| Notify::new()).collect(),
        cfg: cfg.clone(),
    });

    let setup_start = Instant::now();
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(n.max(1));
    let mut tasks = Vec::with_capacity(n);
    let addrs: Vec<SocketAddr> = std::iter::once(cfg.addr).chain(cfg.nodes.clone()).collect();
    for (i, plan) in plans.into_iter().enumerate() {
        let shared = shared.clone();
        let ready = ready_tx.clone();
        let addr = addrs[i % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let stop = shared.stop.clone();
            let r = connection(plan, addr, shared, ready).await;
            if r.is_err() {
                stop.cancel();
            }
            r
        }));
    }
    drop(ready_tx);

    // Setup: every connection registered and joined, or the first failure.
    let setup = async {
        for _ in 0..n {
            match ready_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e),
                None => bail!("a connection task ended during setup"),
            }
        }
        Ok(())
    };
    let setup_result = tokio::time::timeout(cfg.timeout.max(Duration::from_secs(60)), setup).await;
    let setup_err = match setup_result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(anyhow::anyhow!("setup timed out")),
    };
    if let Some(e) = setup_err {
        shared.stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        return Err(e.context("setup failed"));
    }
    let setup_s = setup_start.elapsed().as_secs_f64();
    tokio::time::sleep(cfg.settle).await;
    if let Some(at) = cfg.start_at_unix_ms {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms))).await;
    }

    let syscalls = cfg
        .server_pid
        .filter(|_| cfg.count_syscalls)
        .and_then(SyscallCount::start);
    let cpu0 = server_cpu(cfg.server_pid, &cfg.also_pids);
    let gen0 = self_cpu_s();
    let t0 = now_ns();
    shared.t0_ns.store(t0, Ordering::SeqCst);
    shared.go.cancel();

    let finished = tokio::time::timeout(cfg.timeout, async {
        while shared.remaining.load(Ordering::SeqCst) > 0 {
            shared.all_done.notified().await;
        }
    })
    .await
    .is_ok();
    let t_end = now_ns();
    let cpu1 = server_cpu(cfg.server_pid, &cfg.also_pids);
    let gen1 = self_cpu_s();
    let syscalls = syscalls.and_then(SyscallCount::stop);
    shared.stop.cancel();

    let mut stats = Vec::with_capacity(n);
    let mut failures = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => stats.push(s),
            Ok(Err(e)) => failures.push(format!("{e:#}")),
            Err(e) => failures.push(e.to_string()),
        }
    }

    let mut hist = new_histogram();
    let (mut deliveries, mut expected, mut lost, mut dup, mut reord) = (0u64, 0u64, 0u64, 0, 0);
    let (mut sent, mut errors, mut untracked, mut churn_ops, mut closed) = (0u64, 0u64, 0u64, 0, 0);
    let mut last = t0;
    let mut first_error = None;
    for s in &stats {
        if s.member {
            deliveries += s.deliveries;
            expected += s.expected;
            lost += s.expected.saturating_sub(s.unique());
            dup += s.duplicated;
            reord += s.reordered;
        }
        untracked += s.untracked_deliveries;
        sent += s.sent;
        errors += s.errors;
        churn_ops += s.churn_ops;
        closed += u64::from(s.closed_early);
        last = last.max(s.last_delivery_ns);
        if first_error.is_none() {
            first_error.clone_from(&s.first_error);
        }
        if let Some(h) = &s.hist {
            hist.add(h).expect("same histogram bounds");
        }
    }
    if first_error.is_none() {
        first_error = failures.first().cloned();
    }
    let wall_ns = if finished {
        last.max(t0 + 1) - t0
    } else {
        t_end - t0
    };
    let wall = wall_ns as f64 / 1e9;
    let all_deliveries = deliveries + untracked;
    let server_cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let gen_cpu_s = gen1 - gen0;
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    Ok(json!({
        "scenario": scenario,
        "proto": format!("{:?}", cfg.proto).to_lowercase(),
        "rooms": cfg.rooms,
        "members": cfg.members,
        "senders": cfg.senders,
        "messages_per_sender": cfg.messages,
        "rate": cfg.rate,
        "window": cfg.window,
        "write_each": cfg.write_each,
        "size": cfg.size,
        "dm_every": cfg.dm_every,
        "churners": cfg.churners,
        "connections": n,
        "setup_s": setup_s,
        "completed": finished && failures.is_empty() && closed == 0,
        "wall_s": wall,
        "messages": sent,
        "deliveries": all_deliveries,
        "expected_deliveries": expected,
        "untracked_deliveries": untracked,
        "messages_per_s": sent as f64 / wall,
        "deliveries_per_s": all_deliveries as f64 / wall,
        "latency_ms": {
            "p50": q(0.50), "p99": q(0.99), "p999": q(0.999),
            "max": hist.max() as f64 / 1000.0, "count": hist.len(),
        },
        // The distribution for plots: [percentile, ms] pairs.
        "latency_percentiles_ms": PLOT_PERCENTILES
            .iter()
            .map(|p| json!([p, q(p / 100.0)]))
            .collect::<Vec<_>>(),
        "lost": lost,
        "duplicated": dup,
        "reordered": reord,
        "errors": errors,
        "closed_early": closed,
        "churn_ops": churn_ops,
        "first_error": first_error,
        "server_cpu_s": server_cpu_s,
        "deliveries_per_server_cpu_s": server_cpu_s.map(|c| all_deliveries as f64 / c.max(1e-9)),
        "gen_cpu_s": gen_cpu_s,
        "gen_cpu_us_per_delivery": gen_cpu_s * 1e6 / (all_deliveries.max(1) as f64),
        "server_sends": syscalls.map(|s| s.sends),
        "server_sends_per_delivery": syscalls.map(|s| s.sends as f64 / all_deliveries.max(1) as f64),
        "server_loop_turns": syscalls.map(|s| s.loop_turns),
        "server_loop_turns_per_delivery": syscalls
            .map(|s| s.loop_turns as f64 / all_deliveries.max(1) as f64),
    }))
}

/// One connection: set up, wait for the start, then run its role until told to stop.
async fn connection(
    plan: Plan,
    addr: SocketAddr,
    shared: Arc<Shared>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<ConnStats> {
    let cfg = &shared.cfg;
    let setup = async {
        let _permit = shared.setup.acquire().await?;
        let mut conn = Conn::connect(
            cfg.proto,
            addr,
            plan.nick.clone(),
            cfg.read_buffer,
            cfg.tls.as_ref(),
            cfg.websocket,
        )
        .await?;
        let oper = cfg.oper.as_ref().filter(|_| plan.sender.is_some());
        conn.register(oper).await?;
        let mut rooms: Vec<&str> = Vec::new();
        if plan.member || plan.churner {
            rooms.push(&plan.room);
        }
        if plan.dm_channel {
            rooms.push(&plan.nick);
        }
        if !rooms.is_empty() {
            conn.join(&rooms).await?;
        }
        anyhow::Ok(conn)
    };
    let mut conn = match setup.await {
        Ok(c) => {
            let _ = ready.send(Ok(())).await;
            c
        }
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = ready.send(Err(e)).await;
            bail!(msg);
        }
    };
    drop(ready);

    // Until the start: keep reading (join events of later members, pings) and discard.
    if !read_until(&mut conn, &shared.go, &shared.stop, None).await? {
        return Ok(ConnStats::default());
    }
    if plan.churner {
        return churn(conn, &plan, &shared).await;
    }
    run_member(conn, plan, &shared).await
}

/// Read and discard (answering pings) until `until` is cancelled or `deadline` passes.
/// Returns false if `stop` came first.
async fn read_until(
    conn: &mut Conn,
    until: &CancellationToken,
    stop: &CancellationToken,
    deadline: Option<tokio::time::Instant>,
) -> anyhow::Result<bool> {
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
    let sleep = tokio::time::sleep_until(deadline.unwrap_or(far));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(false),
            _ = until.cancelled() => return Ok(true),
            _ = &mut sleep => return Ok(true),
            r = conn.lines.fill(&mut conn.stream) => {
                if r? == 0 {
                    bail!("{}: connection closed by the server", conn.nick);
                }
                while let Some(line) = conn.lines.next_line() {
                    match conn.proto.classify(line) {
                        Event::Ping(arg) => conn.proto.pong(&mut conn.out, arg),
                        Event::Closed => bail!("{}: {}", conn.nick, String::from_utf8_lossy(line)),
                        _ => {}
                    }
                }
                conn.flush().await?;
            }
        }
    }
}

/// A churner leaves and re-joins its room until the run stops.
async fn churn(mut conn: Conn, plan: &Plan, shared: &Shared) -> anyhow::Result<ConnStats> {
    let mut st = ConnStats::default();
    let never = CancellationToken::new();
    let mut joined = true;
    loop {
        let deadline = tokio::time::Instant::now() + shared.cfg.churn_pause;
        if !read_until(&mut conn, &never, &shared.stop, Some(deadline)).await? {
            return Ok(st);
        }
        if joined {
            conn.leave(&plan.room).await?;
        } else {
            conn.join(&[&plan.room]).await?;
        }
        joined = !joined;
        st.churn_ops += 1;
    }
}

/// The measured loop of a member and/or sender.
async fn run_member(mut conn: Conn, plan: Plan, shared: &Shared) -> anyhow::Result<ConnStats> {
    let cfg = &shared.cfg;
    let proto = cfg.proto;
    let t0 = shared.t0_ns.load(Ordering::SeqCst);
    let mut st = ConnStats {
        member: plan.member,
        expected: plan.expected,
        hist: plan.member.then(new_histogram),
        ..Default::default()
    };
    // Highest sequence seen per sender (direct messages use sender id + senders_total).
    let stot = shared.senders_total as usize;
    let mut last_seq = if plan.member {
        vec![0u64; 2 * stot]
    } else {
        Vec::new()
    };

    let sender = plan.sender.as_ref();
    let sid = sender.map_or(0, |s| s.sid);
    let (mut room_sent, mut acked, mut dm_count) = (0u64, 0u64, 0u64);
    let mut dm_seq = vec![0u64; sender.map_or(0, |s| s.dm_targets.len())];
    let mut text = Vec::with_capacity(cfg.size + 32);
    // Pacing: this sender's interval, with senders spread evenly over the first interval.
    let interval_ns = cfg
        .rate
        .map(|r| (f64::from(shared.senders_total) / r * 1e9) as u64);
    let phase_ns = interval_ns.map_or(0, |i| {
        i * u64::from(sid) / u64::from(shared.senders_total.max(1))
    });
    let mut goal = false;

    loop {
        // Send what the window and the schedule allow.
        let mut pace_wait: Option<u64> = None;
        if let Some(sp) = sender {
            if st.sent < cfg.messages {
                let inflight = if proto.acks_messages() {
                    st.sent - acked
                } else {
                    room_sent
                        .saturating_sub(shared.witness_seq[sid as usize].load(Ordering::Acquire))
                };
                let mut allow = cfg
                    .window
                    .saturating_sub(inflight)
                    .min(cfg.messages - st.sent);
                let now = now_ns();
                if let Some(iv) = interval_ns {
                    let since = now.saturating_sub(t0 + phase_ns);
                    let due = if now < t0 + phase_ns {
                        0
                    } else {
                        since / iv.max(1) + 1
                    };
                    let can = due.min(cfg.messages).saturating_sub(st.sent);
                    if can < allow {
                        allow = can;
                        pace_wait = Some(t0 + phase_ns + (st.sent + allow) * iv);
                    }
                }
                for _ in 0..allow {
                    let n = st.sent + 1;
                    text.clear();
                    if cfg.dm_every > 0 && n % cfg.dm_every == 0 {
                        let t = ((dm_count + u64::from(sid)) % dm_seq.len() as u64) as usize;
                        dm_seq[t] += 1;
                        dm_count += 1;
                        let p = Payload {
                            sid: sid + shared.senders_total,
                            seq: dm_seq[t],
                            ts_ns: now,
                        };
                        write_payload(&mut text, p, cfg.size);
                        proto.direct_message(&mut conn.out, &sp.dm_targets[t], &text);
                    } else {
                        room_sent += 1;
                        let p = Payload {
                            sid,
                            seq: room_sent,
                            ts_ns: now,
                        };
                        write_payload(&mut text, p, cfg.size);
                        proto.room_message(&mut conn.out, &plan.room, &text);
                    }
                    st.sent = n;
                    if cfg.write_each {
                        conn.flush().await?;
                        // Let the other connections run before the next write, as separate
                        // clients would: back-to-back writes would reach the server as one read.
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
        conn.flush().await?;

        if !goal {
            let sent_all = st.sent == cfg.messages && (!proto.acks_messages() || acked >= st.sent);
            let sender_done = sender.is_none() || sent_all;
            let receiver_done = !plan.member || st.unique() >= plan.expected;
            if sender_done && receiver_done {
                goal = true;
                if shared.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                    shared.all_done.notify_one();
                }
            }
        }

        let wake_at = pace_wait.map(|ns| {
            tokio::time::Instant::now() + Duration::from_nanos(ns.saturating_sub(now_ns()))
        });
        // Sticky permits make a spurious wake-up harmless, so watch whenever more is to send.
        let watch_witness = !proto.acks_messages() && sender.is_some() && st.sent < cfg.messages;
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            r = conn.lines.fill(&mut conn.stream) => {
                if r? == 0 {
                    st.closed_early = true;
                    break;
                }
                let now = now_ns();
                while let Some(line) = conn.lines.next_line() {
                    match proto.classify(line) {
                        Event::Delivery(p) => {
                            if !plan.member {
                                st.untracked_deliveries += 1;
                                continue;
                            }
                            let Some(last) = last_seq.get_mut(p.sid as usize) else {
                                st.untracked_deliveries += 1;
                                continue;
                            };
                            st.deliveries += 1;
                            st.last_delivery_ns = now;
                            if p.seq == *last + 1 {
                                *last = p.seq;
                            } else if p.seq > *last + 1 {
                                st.reordered += 1;
                                *last = p.seq;
                            } else {
                                st.duplicated += 1;
                            }
                            if let Some(h) = st.hist.as_mut() {
                                let us = (now.saturating_sub(p.ts_ns) / 1000).max(1);
                                let _ = h.record(us.min(60_000_000));
                            }
                            if plan.witness && (p.sid as usize) < stot {
                                shared.witness_seq[p.sid as usize].fetch_max(p.seq, Ordering::Release);
                                shared.witness_wake[p.sid as usize].notify_one();
                            }
                        }
                        Event::Reply { ok } => {
                            acked += 1;
                            if !ok {
                                st.errors += 1;
                                if st.first_error.is_none() {
                                    st.first_error = Some(String::from_utf8_lossy(line).into_owned());
                                }
                            }
                        }
                        Event::Ping(arg) => proto.pong(&mut conn.out, arg),
                        Event::Closed => {
                            st.closed_early = true;
                            st.first_error.get_or_insert_with(|| String::from_utf8_lossy(line).into_owned());
                        }
                        Event::Other => {}
                    }
                }
                if st.closed_early {
                    break;
                }
            }
            _ = async { tokio::time::sleep_until(wake_at.expect("guarded")).await }, if wake_at.is_some() => {}
            _ = shared.witness_wake[sid as usize].notified(), if watch_witness => {}
        }
    }
    if st.closed_early && st.first_error.is_none() {
        st.first_error = Some(format!("{}: connection closed by the server", plan.nick));
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(proto: Proto) -> Config {
        Config {
            proto,
            addr: "127.0.0.1:1".parse().unwrap(),
            rooms: 2,
            members: 5,
            senders: 2,
            messages: 10,
            rate: None,
            window: 4,
            size: 32,
            dm_every: 5,
            churners: 1,
            churn_pause: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            prefix: "t".into(),
            server_pid: None,
            also_pids: Vec::new(),
            nodes: Vec::new(),
            connect_concurrency: 1,
            read_buffer: 1024,
            oper: None,
            settle: Duration::ZERO,
            start_at_unix_ms: None,
            tls: None,
            websocket: false,
            write_each: false,
            count_syscalls: false,
        }
    }

    #[test]
    fn plans_count_every_expected_delivery() {
        for proto in [Proto::Lanchat, Proto::Redis, Proto::Irc] {
            let c = cfg(proto);
            let ps = plans(&c).unwrap();
            let senders = ps.iter().filter(|p| p.sender.is_some()).count();
            assert_eq!(senders, 4);
            // Each sender: 8 room messages to every other member, 2 direct messages.
            let per_room_receivers = if proto.senders_are_members() { 4 } else { 5 };
            let want = 4 * (8 * per_room_receivers + 2);
            let got: u64 = ps.iter().map(|p| p.expected).sum();
            assert_eq!(got, want, "{proto:?}");
            assert_eq!(
                ps.iter().filter(|p| p.witness).count(),
                usize::from(proto == Proto::Irc) * 2
            );
        }
    }
}
