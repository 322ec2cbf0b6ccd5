//! One attack with the honest users beside it: what `lanchat-abuse` prints a row of and what each
//! e2e abuse test asserts on.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::honest::{Honest, HonestReport};
use super::{attacker_ip, attacks, Conn, Outcome, Target};

/// Every scenario, in the order of the findings.
pub const ALL: &[&str] = &[
    "reconnect_flood",
    "event_flood",
    "history_amplification",
    "room_flood",
    "rooms_flood",
    "stalled_readers",
    "slot_exhaustion",
    "password_guessing",
    "lookalike_nicks",
    "discover_flood",
];

/// One scenario's result.
pub struct Run {
    pub attack: Outcome,
    pub honest: HonestReport,
    /// The server's resident memory before and after, when its pid is known.
    pub rss_kib: Option<(u64, u64)>,
    /// The most it held meanwhile (sampled every 20 ms).
    pub rss_peak_kib: Option<u64>,
}

/// Sample a process's resident memory every 20 ms until stopped; the highest value.
fn sample_peak(pid: u32, stop: CancellationToken) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            peak = peak.max(crate::proc_rss_kib(pid));
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return peak.max(crate::proc_rss_kib(pid)),
            }
        }
    })
}

/// Fill `room` with `n` messages (for history requests to be worth something), from as many
/// addresses as the rate limit needs: 10 messages per nick and address, in a block of addresses
/// no attack uses.
pub async fn fill_history(t: &Target, n: usize) -> Result<(), String> {
    for (a, chunk) in (0..n).collect::<Vec<_>>().chunks(10).enumerate() {
        let from = Some(attacker_ip(250, a as u8 + 1));
        let mut c = Conn::register(t, from, &format!("filler{a}")).await?;
        let join = json!({"type": "join", "room": t.room, "id": "join"});
        c.send(&join).await.map_err(|e| e.to_string())?;
        c.reply(&"join".into(), Duration::from_secs(5)).await;
        for i in chunk {
            let id = json!(i);
            let text = format!("filler message {i} {}", "x".repeat(200));
            let say = json!({"type": "say", "room": t.room, "text": text, "id": id});
            c.send(&say).await.map_err(|e| e.to_string())?;
            match c.reply(&id, Duration::from_secs(5)).await {
                Some(r) if r["type"] == "ok" => {}
                other => return Err(format!("filling history: {other:?}")),
            }
        }
        let _ = c.send(&json!({"type": "quit"})).await;
    }
    Ok(())
}

/// Run the scenario `name` for `dur` against `t` (whose server is `pid`, if known), with the
/// honest users in the room throughout. `block` keeps the attacker addresses of concurrent
/// scenarios apart.
pub async fn run(
    t: &Target,
    name: &str,
    dur: Duration,
    block: u8,
    pid: Option<u32>,
) -> Result<Run, String> {
    let rss = || pid.map(crate::proc_rss_kib);
    if name == "history_amplification" || name == "stalled_readers" {
        fill_history(t, 200).await?;
    }
    let before = rss();
    let stop_sampling = CancellationToken::new();
    let sampler = pid.map(|pid| sample_peak(pid, stop_sampling.clone()));
    // Sockets held by the slot attack stay open while the honest users try to get in.
    let mut held = Vec::new();
    let mut attack = None;
    if name == "slot_exhaustion" {
        let (out, sockets) = attacks::slot_exhaustion(t, block, 20, 64).await;
        attack = Some(out);
        held = sockets;
    }
    let honest = match Honest::start(t, None).await {
        Ok(honest) => honest,
        Err(why) => {
            stop_sampling.cancel();
            let rss_peak_kib = match sampler {
                Some(s) => s.await.ok(),
                None => None,
            };
            return Ok(Run {
                attack: attack.unwrap_or_else(|| Outcome::new(0, "not started")),
                honest: HonestReport::locked_out(why),
                rss_kib: before.zip(rss()),
                rss_peak_kib,
            });
        }
    };
    let attack = match (name, attack) {
        (_, Some(done)) => {
            tokio::time::sleep(dur).await;
            done
        }
        ("reconnect_flood", _) => attacks::reconnect_flood(t, dur, block).await,
        ("event_flood", _) => attacks::event_flood(t, dur, block).await,
        ("history_amplification", _) => attacks::history_amplification(t, dur, block).await,
        ("room_flood", _) => attacks::room_flood(t, dur, block, 8).await,
        ("rooms_flood", _) => {
            // Many rooms first, so that a list that scans them all would show.
            attacks::room_flood(t, Duration::from_millis(500), block.wrapping_add(1), 20).await;
            attacks::rooms_flood(t, dur, block).await
        }
        ("stalled_readers", _) => attacks::stalled_readers(t, dur, block, 32).await,
        ("password_guessing", _) => attacks::password_guessing(t, dur, block).await,
        ("lookalike_nicks", _) => {
            let nick = format!("honest-w{}", std::process::id());
            attacks::lookalike_nicks(t, &nick, block).await
        }
        ("discover_flood", _) => attacks::discover_flood(t, dur, block).await,
        (other, _) => return Err(format!("no scenario {other}")),
    };
    let honest = honest.finish().await;
    drop(held);
    stop_sampling.cancel();
    let rss_peak_kib = match sampler {
        Some(s) => s.await.ok(),
        None => None,
    };
    let rss_kib = before.zip(rss());
    Ok(Run {
        attack,
        honest,
        rss_kib,
        rss_peak_kib,
    })
}
