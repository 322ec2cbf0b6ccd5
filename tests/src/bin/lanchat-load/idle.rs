//! The idle scenario: connect and register many clients, hold them, and report how much the
//! server's resident memory grew per client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::measure::{process_rss_kib, self_cpu_s, server_cpu};
use crate::proto::{Event, Proto};

#[derive(Debug, Clone)]
pub struct Config {
    pub proto: Proto,
    pub addr: SocketAddr,
    pub clients: usize,
    /// How long to hold the clients once all are registered (the RSS is read after `settle`).
    pub hold: Duration,
    pub settle: Duration,
    pub prefix: String,
    pub server_pid: Option<u32>,
    pub connect_concurrency: usize,
    pub timeout: Duration,
    /// Connect over TLS with this (pinned) configuration.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Every connection a WebSocket (`--ws`).
    pub websocket: bool,
}

pub async fn run(cfg: Config) -> anyhow::Result<serde_json::Value> {
    let pid = cfg.server_pid;
    let rss_before = pid.map(process_rss_kib).transpose()?;
    let cpu0 = server_cpu(pid, &[]);
    let gen0 = self_cpu_s();
    let start = Instant::now();
    let sem = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
    let stop = CancellationToken::new();
    // Each registration's time, from its connect (once its turn came) to the welcome.
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<Duration>>(1024);
    let mut tasks = Vec::with_capacity(cfg.clients);
    for i in 0..cfg.clients {
        let (sem, stop, ready, cfg) = (sem.clone(), stop.clone(), ready_tx.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            let setup = async {
                let _permit = sem.acquire().await?;
                let began = Instant::now();
                // Small read buffers: ten thousand idle connections must not cost the
                // generator hundreds of megabytes.
                let mut c = Conn::connect(
                    cfg.proto,
                    cfg.addr,
                    format!("{}{i}", cfg.prefix),
                    512,
                    cfg.tls.as_ref(),
                    cfg.websocket,
                )
                .await?;
                c.register(None).await?;
                anyhow::Ok((c, began.elapsed()))
            };
            let mut conn = match setup.await {
                Ok((c, took)) => {
                    let _ = ready.send(Ok(took)).await;
                    c
                }
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    return;
                }
            };
            drop(ready);
            hold(&mut conn, &stop).await;
        }));
    }
    drop(ready_tx);
    let mut registered = 0usize;
    let mut first_error = None;
    let mut took_ms = Vec::with_capacity(cfg.clients);
    let wait_all = async {
        while let Some(r) = ready_rx.recv().await {
            match r {
                Ok(took) => {
                    registered += 1;
                    took_ms.push(took.as_secs_f64() * 1e3);
                }
                Err(e) => {
                    first_error.get_or_insert(format!("{e:#}"));
                }
            }
        }
    };
    let _ = tokio::time::timeout(cfg.timeout, wait_all).await;
    let register_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(cfg.settle).await;
    let rss_after = pid.map(process_rss_kib).transpose().context("server RSS")?;
    let cpu1 = server_cpu(pid, &[]);
    let gen1 = self_cpu_s();
    tokio::time::sleep(cfg.hold).await;
    let rss_held = pid.map(process_rss_kib).transpose()?;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let per_client = match (rss_before, rss_after) {
        (Some(b), Some(a)) if registered > 0 => Some((a as f64 - b as f64) / registered as f64),
        _ => None,
    };
    Ok(json!({
        "scenario": "idle",
        "proto": format!("{:?}", cfg.proto).to_lowercase(),
        "clients": cfg.clients,
        "registered": registered,
        "completed": registered == cfg.clients,
        "first_error": first_error,
        "register_s": register_s,
        "registrations_per_s": registered as f64 / register_s,
        "register_ms": quantiles(&mut took_ms),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_after_hold_kib": rss_held,
        "kib_per_client": per_client,
        "server_cpu_s": match (cpu0, cpu1) { (Some(a), Some(b)) => Some(b - a), _ => None },
        "gen_cpu_s": gen1 - gen0,
    }))
}

/// p50, p99 and max of `ms` (null when empty).
fn quantiles(ms: &mut [f64]) -> serde_json::Value {
    if ms.is_empty() {
        return serde_json::Value::Null;
    }
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    json!({ "p50": q(0.50), "p99": q(0.99), "max": q(1.0) })
}

/// Keep the connection open, answering keepalives, until stopped.
async fn hold(conn: &mut Conn, stop: &CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = conn.lines.fill(&mut conn.stream) => {
                if !matches!(r, Ok(n) if n > 0) {
                    return;
                }
                while let Some(line) = conn.lines.next_line() {
                    if let Event::Ping(arg) = conn.proto.classify(line) {
                        conn.proto.pong(&mut conn.out, arg);
                    }
                }
                if conn.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
