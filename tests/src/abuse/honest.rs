//! The honest users an attack must not hurt: a writer posting at a person's pace (4 messages a
//! second), a reader in the same room that checks each of them arrives once and in order, and
//! `ping` round trips every 10 ms. Both read everything the server sends them (an attacker's
//! events included) and answer its pings, as a real client does.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Conn, Target};

/// A person's pace: well under the documented 5 messages a second.
const WRITE_EVERY: Duration = Duration::from_millis(250);
const PING_EVERY: Duration = Duration::from_millis(10);
/// The last text the writer sends; the reader stops when it arrives.
const END: &str = "honest end";

/// What the honest users went through.
#[derive(Debug)]
pub struct HonestReport {
    /// Round trips of `ping` requests, in microseconds.
    pub ping_us: Histogram<u64>,
    /// From the writer's `say` to the reader's `message`, in microseconds.
    pub delivery_us: Histogram<u64>,
    /// Messages the writer got `ok` for, and how many the reader received, in order, once each.
    pub sent: u64,
    pub received: u64,
    /// Messages received twice or out of order (should be 0).
    pub misordered: u64,
    /// `rate_limited` and other errors the honest users were given (should be 0).
    pub errors: Vec<String>,
    /// Why a connection ended before the test stopped it (should be `None`).
    pub dropped: Option<String>,
    /// Events the reader received from others (the attacker's), per second.
    pub foreign_events: u64,
    pub secs: f64,
}

impl HonestReport {
    pub fn ping_p99_ms(&self) -> f64 {
        self.ping_us.value_at_quantile(0.99) as f64 / 1000.0
    }

    pub fn delivery_p99_ms(&self) -> f64 {
        self.delivery_us.value_at_quantile(0.99) as f64 / 1000.0
    }

    pub fn summary(&self) -> String {
        format!(
            "honest: sent={} received={} misordered={} errors={} dropped={} ping p50/p99/max \
             {:.2}/{:.2}/{:.2} ms, delivery p99 {:.2} ms, foreign events {}/s",
            self.sent,
            self.received,
            self.misordered,
            self.errors.len(),
            self.dropped.as_deref().unwrap_or("no"),
            self.ping_us.value_at_quantile(0.5) as f64 / 1000.0,
            self.ping_p99_ms(),
            self.ping_us.max() as f64 / 1000.0,
            self.delivery_p99_ms(),
            (self.foreign_events as f64 / self.secs.max(1e-9)) as u64,
        )
    }

    /// The report of honest users who could not even register.
    pub fn locked_out(why: String) -> HonestReport {
        HonestReport {
            ping_us: Histogram::new(3).expect("histogram"),
            delivery_us: Histogram::new(3).expect("histogram"),
            sent: 0,
            received: 0,
            misordered: 0,
            errors: vec![format!("could not register: {why}")],
            dropped: Some("locked out".into()),
            foreign_events: 0,
            secs: 0.0,
        }
    }

    /// Every guarantee an honest user has: never dropped, never limited, every message once and
    /// in order.
    pub fn unharmed(&self) -> Result<(), String> {
        if let Some(why) = &self.dropped {
            return Err(format!("an honest user was dropped: {why}"));
        }
        if !self.errors.is_empty() {
            return Err(format!("honest users got errors: {:?}", self.errors));
        }
        if self.received != self.sent || self.misordered > 0 {
            return Err(format!(
                "honest messages: {} sent, {} received, {} misordered",
                self.sent, self.received, self.misordered
            ));
        }
        Ok(())
    }
}

/// The honest users, running until [`Honest::finish`].
pub struct Honest {
    stop: CancellationToken,
    writer: JoinHandle<Side>,
    reader: JoinHandle<Side>,
    started: Instant,
}

/// What one honest connection saw.
#[derive(Default)]
struct Side {
    sent: u64,
    received: u64,
    misordered: u64,
    errors: Vec<String>,
    dropped: Option<String>,
    foreign_events: u64,
    ping_us: Vec<u64>,
    delivery_us: Vec<u64>,
}

impl Honest {
    /// Register the writer and the reader (from `from`, 127.0.0.1 by default) in the target's
    /// room, and start them.
    pub async fn start(target: &Target, from: Option<IpAddr>) -> Result<Honest, String> {
        let stamp = std::process::id();
        let (w_nick, r_nick) = (format!("honest-w{stamp}"), format!("honest-r{stamp}"));
        let mut writer = Conn::register(target, from, &w_nick).await?;
        let mut reader = Conn::register(target, from, &r_nick).await?;
        for c in [&mut writer, &mut reader] {
            let join = json!({"type": "join", "room": target.room, "id": "join"});
            c.send(&join).await.map_err(|e| e.to_string())?;
            c.reply(&"join".into(), Duration::from_secs(5))
                .await
                .filter(|r| r["type"] == "ok")
                .ok_or("honest join failed")?;
        }
        let stop = CancellationToken::new();
        let started = Instant::now();
        let room = target.room.clone();
        Ok(Honest {
            writer: tokio::spawn(write(writer, room, started, stop.clone())),
            reader: tokio::spawn(read(reader, w_nick, started, stop.clone())),
            stop,
            started,
        })
    }

    /// Stop writing, wait for the reader to see the last message, and report.
    pub async fn finish(self) -> HonestReport {
        self.stop.cancel();
        let w = self.writer.await.unwrap_or_default();
        let r = self.reader.await.unwrap_or_default();
        let mut ping_us = Histogram::new(3).expect("histogram");
        let mut delivery_us = Histogram::new(3).expect("histogram");
        for v in &r.ping_us {
            ping_us.saturating_record(*v);
        }
        for v in &r.delivery_us {
            delivery_us.saturating_record(*v);
        }
        HonestReport {
            ping_us,
            delivery_us,
            sent: w.sent,
            received: r.received,
            misordered: r.misordered,
            errors: w.errors.into_iter().chain(r.errors).collect(),
            dropped: w.dropped.or(r.dropped),
            foreign_events: r.foreign_events,
            secs: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Answer a server `ping`, note an error or the end of the session; true when it ended.
async fn common(c: &mut Conn, v: &Option<Value>, side: &mut Side) -> bool {
    match v {
        None => {
            side.dropped.get_or_insert("connection closed".into());
            true
        }
        Some(v) if v["type"] == "bye" => {
            side.dropped.get_or_insert(format!("bye {}", v["reason"]));
            true
        }
        Some(v) if v["type"] == "ping" => {
            let _ = c.send(&json!({"type": "pong"})).await;
            false
        }
        Some(v) if v["type"] == "error" => {
            side.errors.push(v.to_string());
            false
        }
        Some(_) => false,
    }
}

async fn write(mut c: Conn, room: String, started: Instant, stop: CancellationToken) -> Side {
    let mut side = Side::default();
    let mut tick = tokio::time::interval(WRITE_EVERY);
    let mut seq = 0u64;
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = tick.tick(), if !stopping => {
                let text = match stop.is_cancelled() {
                    true => {
                        stopping = true;
                        END.to_owned()
                    }
                    false => format!("h {seq} {}", started.elapsed().as_micros()),
                };
                seq += 1;
                let say = json!({"type": "say", "room": room, "text": text, "id": seq});
                if c.send(&say).await.is_err() {
                    side.dropped.get_or_insert("write failed".into());
                    return side;
                }
            }
            v = c.next(Duration::from_secs(10)) => {
                if common(&mut c, &v, &mut side).await {
                    return side;
                }
                let v = v.unwrap_or_default();
                if v["type"] == "ok" && v["cmd"] == "say" {
                    side.sent += 1;
                    if stopping && v["re"] == seq {
                        let _ = c.send(&json!({"type": "quit"})).await;
                        return side;
                    }
                }
            }
        }
    }
}

async fn read(mut c: Conn, writer: String, started: Instant, stop: CancellationToken) -> Side {
    let mut side = Side::default();
    let mut tick = tokio::time::interval(PING_EVERY);
    let mut pings: std::collections::HashMap<u64, Instant> = Default::default();
    let (mut next_ping, mut next_seq) = (0u64, 0u64);
    // Once stopped, how long the last message may take to come.
    let mut deadline: Option<Instant> = None;
    loop {
        if deadline.is_some_and(|d| Instant::now() > d) {
            side.errors
                .push("the writer's last message never came".into());
            return side;
        }
        if deadline.is_none() && stop.is_cancelled() {
            deadline = Some(Instant::now() + Duration::from_secs(10));
        }
        tokio::select! {
            _ = tick.tick() => {
                next_ping += 1;
                pings.insert(next_ping, Instant::now());
                if c.send(&json!({"type": "ping", "id": next_ping})).await.is_err() {
                    side.dropped.get_or_insert("write failed".into());
                    return side;
                }
            }
            v = c.next(Duration::from_secs(10)) => {
                if common(&mut c, &v, &mut side).await {
                    return side;
                }
                let v = v.unwrap_or_default();
                match v["type"].as_str().unwrap_or("") {
                    "ok" if v["cmd"] == "ping" => {
                        if let Some(t) = v["re"].as_u64().and_then(|id| pings.remove(&id)) {
                            side.ping_us.push(t.elapsed().as_micros() as u64);
                        }
                    }
                    "message" if v["from"] == writer.as_str() => {
                        let text = v["text"].as_str().unwrap_or("");
                        if text == END {
                            side.received += 1;
                            let _ = c.send(&json!({"type": "quit"})).await;
                            return side;
                        }
                        let mut parts = text.split(' ').skip(1);
                        let seq: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
                        let at: u128 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                        if seq == next_seq {
                            side.received += 1;
                            next_seq += 1;
                        } else {
                            side.misordered += 1;
                            next_seq = seq.saturating_add(1);
                        }
                        let now = started.elapsed().as_micros();
                        side.delivery_us.push(now.saturating_sub(at) as u64);
                    }
                    "ok" | "pong" => {}
                    _ => side.foreign_events += 1,
                }
            }
        }
    }
}
