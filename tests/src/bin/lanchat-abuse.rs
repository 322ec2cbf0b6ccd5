//! lanchat-abuse: the attacks of issue 14 against a running server, each with honest users in
//! the same room, one row per attack: what the attacker achieved, whether the honest users were
//! hurt, their latency, and the server's memory. Run it against two builds to compare them
//! (bench/abuse.sh does). Loopback only; every attack stops by itself.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use lanchat_tests::abuse::{scenario, Target};

/// Attack a lanchat server on loopback, with honest users watching.
#[derive(Debug, Parser)]
#[command(name = "lanchat-abuse", max_term_width = 100)]
struct Cli {
    /// The server's chat address (loopback only)
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: SocketAddr,
    /// Its discovery port (for discover_flood)
    #[arg(long)]
    udp_port: Option<u16>,
    /// Its process id: memory is read from /proc/PID/status
    #[arg(long)]
    server_pid: Option<u32>,
    /// Its password (honest users use it; password_guessing runs only with one)
    #[arg(long)]
    password: Option<String>,
    /// Seconds each attack lasts
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Attacks to run (default: all)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// One JSON object per attack instead of text
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !cli.addr.ip().is_loopback() {
        bail!("--addr must be a loopback address");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut target = Target::new(cli.addr);
    target.udp = cli.udp_port.map(|p| SocketAddr::new(cli.addr.ip(), p));
    target.password = cli.password.clone();
    let names: Vec<&str> = match cli.only.is_empty() {
        true => scenario::ALL.to_vec(),
        false => cli.only.iter().map(String::as_str).collect(),
    };
    for (i, name) in names.iter().enumerate() {
        if *name == "password_guessing" && target.password.is_none() {
            eprintln!("password_guessing skipped: the server has no --password here");
            continue;
        }
        if *name == "discover_flood" && target.udp.is_none() {
            eprintln!("discover_flood skipped: no --udp-port");
            continue;
        }
        let dur = Duration::from_secs_f64(cli.secs);
        // Each attack from addresses of its own (127.0.<block>.x).
        let block = 10 + 2 * i as u8;
        let run = scenario::run(&target, name, dur, block, cli.server_pid)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("scenario {name}"))?;
        if cli.json {
            let row = serde_json::json!({
                "attack": name,
                "finding": run.attack.finding,
                "secs": run.attack.secs,
                "counts": run.attack.counts,
                "honest_unharmed": run.honest.unharmed().is_ok(),
                "honest_dropped": run.honest.dropped,
                "honest_errors": run.honest.errors.len(),
                "honest_sent": run.honest.sent,
                "honest_received": run.honest.received,
                "ping_p99_ms": run.honest.ping_p99_ms(),
                "delivery_p99_ms": run.honest.delivery_p99_ms(),
                "foreign_events_per_s": run.honest.foreign_events as f64 / run.honest.secs,
                "rss_kib": run.rss_kib,
                "rss_peak_kib": run.rss_peak_kib,
            });
            println!("{row}");
        } else {
            println!("{}", run.attack.summary());
            println!("  {}", run.honest.summary());
            if let Some((before, after)) = run.rss_kib {
                let peak = run.rss_peak_kib.unwrap_or(after);
                println!("  server RSS {before} -> {after} KiB (peak {peak})");
            }
        }
    }
    Ok(())
}
