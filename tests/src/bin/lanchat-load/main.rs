//! lanchat-load: a load generator for lanchat, Redis pub/sub and IRC servers, so that the three
//! can be measured side by side with the same load shapes (see BENCHMARKS.md and issue 9).
//!
//! Modules: `proto` (the three wire protocols and the message payload), `lines` (the line
//! buffer), `conn` (connect, register, join), `fanout` (fan-out and mixed scenarios), `idle`
//! (memory per idle client), `measure` (server CPU and RSS from /proc, own CPU, histograms).
//!
//! It only ever connects to loopback addresses, and every run is bounded by a message count and
//! a timeout.

mod conn;
mod fanout;
mod idle;
mod lines;
mod measure;
mod proto;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::conn::Oper;
use crate::proto::Proto;

/// Load generator for lanchat (and, for comparison, Redis pub/sub and IRC servers).
#[derive(Debug, Parser)]
#[command(name = "lanchat-load", max_term_width = 100)]
struct Cli {
    /// Protocol of the server under test
    #[arg(long, global = true, value_enum, default_value = "lanchat")]
    proto: Proto,
    /// Server address (loopback only)
    #[arg(long, global = true, default_value = "127.0.0.1:7878")]
    addr: SocketAddr,
    /// Server process id: its CPU time (/proc/PID/stat) and memory (/proc/PID/status) are read
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// fanout: another process whose CPU counts as the server's (a cluster's other nodes and its
    /// broker); repeat for each
    #[arg(long, global = true)]
    also_pid: Vec<u32>,
    /// fanout: another address of the same chat (a cluster's other nodes, loopback only);
    /// connections are spread over --addr and these in turn; repeat for each
    #[arg(long, global = true)]
    node: Vec<SocketAddr>,
    /// Print one JSON object instead of text
    #[arg(long, global = true)]
    json: bool,
    /// Runtime worker threads (1 = a single-threaded runtime, the cheapest per message)
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Prefix of every nick and room name (use different ones for concurrent generators)
    #[arg(long, global = true, default_value = "g")]
    prefix: String,
    /// Connections being set up at once
    #[arg(long, global = true, default_value_t = 200)]
    connect_concurrency: usize,
    /// Give up after this many seconds of run phase (setup has its own 30 s per step)
    #[arg(long, global = true, default_value_t = 120)]
    timeout: u64,
    /// IRC operator NAME:PASSWORD; senders OPER and set user mode +F (no flood throttling)
    #[arg(long, global = true)]
    irc_oper: Option<String>,
    /// Count the server's sends and event-loop turns during the run (`perf stat` on the syscall
    /// tracepoints of --server-pid; needs root): reported per delivery
    #[arg(long, global = true)]
    count_syscalls: bool,
    /// lanchat over TLS, pinned to this certificate fingerprint (the server's `tls_sha256`)
    #[arg(long, global = true, value_name = "SHA256_HEX")]
    tls: Option<String>,
    /// lanchat over WebSocket: every connection upgrades on /ws and sends each line as a text
    /// message (with --tls: wss)
    #[arg(long, global = true)]
    ws: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Connect and register N clients, hold them, report the server's RSS growth per client
    Idle {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Seconds to hold the clients after the measurement
        #[arg(long, default_value_t = 1.0)]
        hold: f64,
        /// Milliseconds between the last registration and reading the RSS
        #[arg(long, default_value_t = 500)]
        settle_ms: u64,
    },
    /// Rooms of members, some of which send: deliveries, latency, order and loss
    Fanout(FanoutArgs),
    /// Fan-out plus direct messages and members that keep leaving and re-joining
    Mixed {
        #[command(flatten)]
        fanout: FanoutArgs,
        /// Every Nth message of a sender is a direct message to a receiver of its room
        #[arg(long, default_value_t = 4)]
        dm_every: u64,
        /// Connections per room that leave and re-join during the run (not checked)
        #[arg(long, default_value_t = 2)]
        churners: usize,
        /// Milliseconds a churner waits between a leave and a join
        #[arg(long, default_value_t = 20)]
        churn_pause_ms: u64,
    },
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Members per room (for lanchat and IRC the senders are among them)
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Senders per room
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per sender
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Total messages per second over all senders, or `max`
    #[arg(long, default_value = "max")]
    rate: String,
    /// Messages a sender may have in flight (sent, not yet acknowledged)
    #[arg(long, default_value_t = 32)]
    window: u64,
    /// Message text size in bytes
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Read buffer per connection in bytes
    #[arg(long, default_value_t = 32 * 1024)]
    read_buffer: usize,
    /// Write all the messages a sender may send at that moment in one write(), as a bridge or a
    /// pipelining bot does. The default writes each message in its own write() and lets the
    /// other connections run before the next, as people's clients do (issue 17).
    #[arg(long)]
    batched: bool,
    /// Milliseconds between the end of setup and the start of the clock
    #[arg(long, default_value_t = 300)]
    settle_ms: u64,
    /// Start the clock at this Unix time in milliseconds (after setup), to line up several
    /// generator processes
    #[arg(long)]
    start_at: Option<u64>,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(ok) if ok => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("lanchat-load: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Returns whether the run completed without loss, duplication, reordering or errors.
fn run() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.addr.ip().is_loopback() && cli.node.iter().all(|a| a.ip().is_loopback()),
        "--addr and --node must be loopback addresses (127.0.0.1)"
    );
    let nofile = measure::raise_nofile();
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    let oper = cli
        .irc_oper
        .as_deref()
        .map(|s| {
            let (name, password) = s
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--irc-oper wants NAME:PASSWORD"))?;
            anyhow::Ok(Oper {
                name: name.into(),
                password: password.into(),
            })
        })
        .transpose()?;
    let timeout = Duration::from_secs(cli.timeout);
    anyhow::ensure!(
        !cli.ws || cli.proto == Proto::Lanchat,
        "--ws is for --proto lanchat"
    );
    let tls = tls_connector(&cli)?;
    let report = match &cli.scenario {
        Scenario::Idle {
            clients,
            hold,
            settle_ms,
        } => {
            anyhow::ensure!(
                (*clients as u64) < nofile,
                "{clients} clients need more open files than the limit {nofile} (raise ulimit -n)"
            );
            rt.block_on(idle::run(idle::Config {
                proto: cli.proto,
                addr: cli.addr,
                clients: *clients,
                hold: Duration::from_secs_f64(*hold),
                settle: Duration::from_millis(*settle_ms),
                prefix: cli.prefix.clone(),
                server_pid: cli.server_pid,
                connect_concurrency: cli.connect_concurrency,
                timeout,
                tls,
                websocket: cli.ws,
            }))?
        }
        Scenario::Fanout(f) => {
            let cfg = fanout_config(&cli, f, oper.clone(), timeout)?;
            rt.block_on(fanout::run(cfg, "fanout"))?
        }
        Scenario::Mixed {
            fanout: f,
            dm_every,
            churners,
            churn_pause_ms,
        } => {
            let mut cfg = fanout_config(&cli, f, oper.clone(), timeout)?;
            cfg.dm_every = *dm_every;
            cfg.churners = *churners;
            cfg.churn_pause = Duration::from_millis(*churn_pause_ms);
            rt.block_on(fanout::run(cfg, "mixed"))?
        }
    };
    // Drop the runtime (and every connection) before printing, without waiting on stragglers.
    rt.shutdown_timeout(Duration::from_secs(1));
    if cli.json {
        println!("{report}");
    } else {
        print_text(&report);
    }
    let clean = report["completed"].as_bool() == Some(true)
        && ["lost", "duplicated", "reordered", "errors"]
            .iter()
            .all(|k| report[*k].as_u64().unwrap_or(0) == 0);
    Ok(clean)
}

/// The pinned TLS configuration of `--tls`, if given.
fn tls_connector(
    cli: &Cli,
) -> anyhow::Result<Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>> {
    let Some(hex) = &cli.tls else {
        return Ok(None);
    };
    anyhow::ensure!(cli.proto == Proto::Lanchat, "--tls is for --proto lanchat");
    let pin = lanchat_protocol::pin::Fingerprint::parse(hex)
        .ok_or_else(|| anyhow::anyhow!("--tls wants 64 hex digits (the server's tls_sha256)"))?;
    Ok(Some(std::sync::Arc::new(
        lanchat_protocol::pin::client_config(pin),
    )))
}

fn fanout_config(
    cli: &Cli,
    f: &FanoutArgs,
    oper: Option<Oper>,
    timeout: Duration,
) -> anyhow::Result<fanout::Config> {
    let rate = match f.rate.as_str() {
        "max" => None,
        r => {
            let v: f64 = r
                .parse()
                .map_err(|_| anyhow::anyhow!("--rate wants a number or `max`"))?;
            anyhow::ensure!(v > 0.0, "--rate must be positive");
            Some(v)
        }
    };
    let conns = f.rooms * (f.members + f.senders + 2);
    let nofile = measure::raise_nofile();
    anyhow::ensure!(
        (conns as u64) < nofile,
        "about {conns} connections need more open files than the limit {nofile}"
    );
    Ok(fanout::Config {
        proto: cli.proto,
        addr: cli.addr,
        rooms: f.rooms,
        members: f.members,
        senders: f.senders,
        messages: f.messages,
        rate,
        window: f.window.max(1),
        size: f.size.max(32),
        dm_every: 0,
        churners: 0,
        churn_pause: Duration::from_millis(20),
        timeout,
        prefix: cli.prefix.clone(),
        server_pid: cli.server_pid,
        also_pids: cli.also_pid.clone(),
        nodes: cli.node.clone(),
        connect_concurrency: cli.connect_concurrency,
        read_buffer: f.read_buffer,
        write_each: !f.batched,
        count_syscalls: cli.count_syscalls,
        oper,
        settle: Duration::from_millis(f.settle_ms),
        start_at_unix_ms: f.start_at,
        tls: tls_connector(cli)?,
        websocket: cli.ws,
    })
}

fn print_text(r: &Value) {
    let num = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    if r["scenario"] == "idle" {
        let took = |k: &str| r["register_ms"][k].as_f64().unwrap_or(f64::NAN);
        println!(
            "idle {} clients={} registered={} in {:.2}s ({:.0}/s), each connect to welcome p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
            r["proto"].as_str().unwrap_or("?"),
            r["clients"],
            r["registered"],
            num("register_s"),
            num("registrations_per_s"),
            took("p50"),
            took("p99"),
            took("max"),
        );
        println!(
            "server rss before={} KiB after={} KiB ({:.2} KiB per client), server cpu {:.2}s, generator cpu {:.2}s",
            r["rss_before_kib"],
            r["rss_after_kib"],
            num("kib_per_client"),
            num("server_cpu_s"),
            num("gen_cpu_s"),
        );
    } else {
        let lat = &r["latency_ms"];
        println!(
            "{} {} rooms={} members={} senders={} messages/sender={} rate={} window={}",
            r["scenario"].as_str().unwrap_or("?"),
            r["proto"].as_str().unwrap_or("?"),
            r["rooms"],
            r["members"],
            r["senders"],
            r["messages_per_sender"],
            r["rate"],
            r["window"],
        );
        println!(
            "wall {:.3}s  messages {} ({:.0}/s)  deliveries {} of {} expected ({:.0}/s)",
            num("wall_s"),
            r["messages"],
            num("messages_per_s"),
            r["deliveries"],
            r["expected_deliveries"],
            num("deliveries_per_s"),
        );
        println!(
            "latency ms p50 {:.3} p99 {:.3} p999 {:.3} max {:.3}",
            lat["p50"].as_f64().unwrap_or(f64::NAN),
            lat["p99"].as_f64().unwrap_or(f64::NAN),
            lat["p999"].as_f64().unwrap_or(f64::NAN),
            lat["max"].as_f64().unwrap_or(f64::NAN),
        );
        println!(
            "lost {} duplicated {} reordered {} errors {} closed {}",
            r["lost"], r["duplicated"], r["reordered"], r["errors"], r["closed_early"],
        );
        println!(
            "server cpu {:.3}s -> {:.0} deliveries per server CPU-second; generator cpu {:.3}s ({:.3} us/delivery)",
            num("server_cpu_s"),
            num("deliveries_per_server_cpu_s"),
            num("gen_cpu_s"),
            num("gen_cpu_us_per_delivery"),
        );
        if r["server_sends"].is_u64() {
            println!(
                "server sends {} ({:.2} deliveries per send), event-loop turns {} ({:.4} per delivery)",
                r["server_sends"],
                1.0 / num("server_sends_per_delivery"),
                r["server_loop_turns"],
                num("server_loop_turns_per_delivery"),
            );
        }
    }
    if let Some(e) = r["first_error"].as_str() {
        println!("first error: {e}");
    }
}
