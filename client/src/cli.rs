//! The command line: `lanchat [HOST[:PORT]] [options]` to chat, `lanchat discover` to list the
//! servers on the LAN. [`run`] chooses the server (given, or discovered), then runs a session in
//! the mode stdin calls for: the REPL on a terminal, scripting otherwise.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lanchat_protocol::discovery::ServerState;
use lanchat_protocol::validate::check_nick;
use lanchat_protocol::{DEFAULT_ANNOUNCE_PORT, DEFAULT_PORT, MAX_NAME_CHARS};
use tokio::sync::mpsc;

use crate::config::{self, Config};
use crate::discovery::{self, Found};
use crate::link::TcpDialer;
use crate::output::{Mode, StdScreen};
use crate::session::{self, Session};
use crate::tls::{SecureDialer, Security};
use crate::trust::{self, KnownServers, PinSource};
use crate::{commands, repl, Error};
use lanchat_protocol::pin::Fingerprint;

/// lanchat: chat with the people on your LAN.
#[derive(Debug, Parser)]
#[command(name = "lanchat", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Sub>,
    #[command(flatten)]
    pub chat: ChatArgs,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// List the lanchat servers on the LAN.
    Discover(DiscoverArgs),
    /// List the pinned server certificates, or pin one (accept a server's new certificate).
    Trust(TrustArgs),
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The server as lanchat knows it: its name (found by discovery) or HOST:PORT (given).
    pub server: Option<String>,
    /// The certificate's fingerprint to trust from now on (64 hex digits, as the server prints
    /// it in `tls_sha256 ...` and as the refusal shows it).
    #[arg(value_name = "FINGERPRINT")]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Server to connect to: HOST, HOST:PORT or [IPv6]:PORT (default port 7878); the nodes of
    /// one cluster as HOST:PORT,HOST:PORT (after a loss the next is tried). Without it, lanchat
    /// looks for servers on the LAN.
    #[arg(value_name = "HOST[:PORT][,HOST[:PORT]...]")]
    pub host: Option<String>,
    /// Your nick (default: your login name).
    #[arg(long, env = "LANCHAT_NICK")]
    pub nick: Option<String>,
    /// Room to join (and, when stdin is not a terminal, to send each input line to).
    #[arg(long)]
    pub room: Option<String>,
    /// File whose first line is the server password (else $LANCHAT_PASSWORD; else, at a
    /// terminal, lanchat asks when the server wants one).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Do not ring the terminal bell on mentions and direct messages.
    #[arg(long)]
    pub no_bell: bool,
    /// Print every server frame as received, one JSON object per line (for bots and pipelines).
    #[arg(long)]
    pub json: bool,
    /// How long to look for servers when no HOST is given.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub discover_timeout: f64,
    /// UDP discovery port to look for servers on.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_ANNOUNCE_PORT)]
    pub discover_port: u16,
    /// Trust exactly this certificate (64 hex digits, SHA-256), whatever was recorded before;
    /// nothing is recorded. For scripts.
    #[arg(long, value_name = "HEX", conflicts_with = "no_tls")]
    pub tls_fingerprint: Option<String>,
    /// Connect in plain text, without TLS (for servers older than TLS). A password then
    /// travels in clear text.
    #[arg(long)]
    pub no_tls: bool,
    /// The config file (default: $XDG_CONFIG_HOME/lanchat/config.toml).
    #[arg(long, value_name = "PATH", env = "LANCHAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Write a commented default config file (never over an existing one), then exit.
    #[arg(long)]
    pub write_config: bool,
    /// Keep logs of the rooms and direct messages (as `log = true` in the config).
    #[arg(long)]
    pub log: bool,
    #[command(flatten)]
    pub interfaces: Interfaces,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// How long to wait for answers.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub timeout: f64,
    /// One JSON object per server and line.
    #[arg(long)]
    pub json: bool,
    /// Also ask this host directly (for servers on other subnets); repeatable.
    #[arg(
        long = "host",
        value_name = "HOST",
        env = "LANCHAT_HOSTS",
        value_delimiter = ','
    )]
    pub hosts: Vec<String>,
    /// UDP discovery port.
    #[arg(long, default_value_t = DEFAULT_ANNOUNCE_PORT)]
    pub port: u16,
    #[command(flatten)]
    pub interfaces: Interfaces,
}

/// Run what the command line asks for.
pub fn run(cli: Cli) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Fatal(format!("cannot start the runtime: {e}")))?;
    match cli.command {
        Some(Sub::Discover(args)) => runtime.block_on(discover_command(args)),
        Some(Sub::Trust(args)) => trust_command(args),
        None if cli.chat.write_config => config::write_command(cli.chat.config.as_deref()),
        None => {
            let config = Config::load(cli.chat.config.as_deref())?;
            runtime.block_on(chat(cli.chat, config))
        }
    }
}

fn seconds(value: f64, flag: &str) -> Result<Duration, Error> {
    if value.is_finite() && value > 0.0 && value <= 3600.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(Error::Usage(format!(
            "{flag} must be a number of seconds above 0"
        )))
    }
}

/// `--interface`, shared by the chat (where to look for servers) and `discover`.
#[derive(Debug, Clone, Args)]
pub struct Interfaces {
    /// Look for servers only on these interfaces (comma-separated names, e.g. eth0).
    #[arg(
        long = "interface",
        value_name = "IFACE",
        env = "LANCHAT_INTERFACES",
        value_delimiter = ','
    )]
    pub names: Vec<String>,
}

impl Interfaces {
    /// The names given, or `None` for every interface.
    fn selected(&self) -> Option<Vec<String>> {
        let list: Vec<String> = self
            .names
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        (!list.is_empty()).then_some(list)
    }
}

async fn discover_command(args: DiscoverArgs) -> Result<(), Error> {
    let opts = discovery::Options {
        timeout: seconds(args.timeout, "--timeout")?,
        port: args.port,
        hosts: args.hosts.into_iter().filter(|h| !h.is_empty()).collect(),
        interfaces: args.interfaces.selected(),
        broadcast: true,
    };
    let mut report = discovery::discover(&opts).await.map_err(discovery_failed)?;
    if report.servers.is_empty() {
        for line in report.nothing_found() {
            eprintln!("{line}");
        }
        return Err(Error::Fatal("no server found".into()));
    }
    if let Some(known) = load_known()? {
        discovery::mark_pins(&mut report.servers, &known);
    }
    let mut stdout = std::io::stdout().lock();
    let lines = if args.json {
        report
            .servers
            .iter()
            .map(|s| serde_json::to_string(s).expect("servers serialise"))
            .collect()
    } else {
        discovery::table(&report.servers)
    };
    for line in lines {
        let _ = writeln!(stdout, "{line}");
    }
    Ok(())
}

/// `HOST`, `HOST:PORT`, `IP`, `[IPv6]:PORT` to a `host:port` string for connecting.
pub fn parse_target(host: &str) -> Result<String, Error> {
    let host = host.trim();
    if host.is_empty() {
        return Err(Error::Usage("the host is empty".into()));
    }
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return Ok(addr.to_string());
    }
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT).to_string());
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && !name.contains(':') => {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Ok(format!("{name}:{p}")),
                _ => Err(Error::Usage(format!("invalid port in {host:?}"))),
            }
        }
        Some(_) => Err(Error::Usage(format!("cannot read {host:?} as HOST[:PORT]"))),
        None => Ok(format!("{host}:{DEFAULT_PORT}")),
    }
}

/// The login name: $USER, else the password database.
fn login_name() -> Option<String> {
    if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return Some(user);
    }
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// A nick from a login name: disallowed characters become `_`, at most 32 characters.
pub fn sanitise_nick(login: &str) -> String {
    let nick: String = login
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    if nick.is_empty() {
        "guest".into()
    } else {
        nick
    }
}

fn read_password(path: &PathBuf) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

async fn chat(args: ChatArgs, config: Config) -> Result<(), Error> {
    let interactive = std::io::stdin().is_terminal();
    let mode = if args.json {
        Mode::Json
    } else if interactive {
        Mode::Interactive
    } else {
        Mode::Script
    };
    let nick = match args.nick.as_ref().or(config.nick.as_ref()) {
        Some(n) => {
            check_nick(n).map_err(|(_, why)| Error::Usage(format!("--nick: {why}")))?;
            n.clone()
        }
        None => sanitise_nick(&login_name().unwrap_or_default()),
    };
    let room = match &args.room {
        Some(r) => Some(commands::room_name(r).map_err(|h| Error::Usage(format!("--room: {h}")))?),
        None => None,
    };
    let password = match &args.password_file {
        Some(path) => Some(read_password(path)?),
        None => std::env::var("LANCHAT_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()),
    };
    let discover_timeout = seconds(args.discover_timeout, "--discover-timeout")?;
    let (host, flag_pin) = config.target(args.host.as_deref(), args.tls_fingerprint.as_deref());
    let flag_pin = flag_pin
        .map(|hex| {
            Fingerprint::parse(hex.trim()).ok_or_else(|| {
                Error::Usage("--tls-fingerprint: not 64 hex digits (a SHA-256)".into())
            })
        })
        .transpose()?;
    let known = load_known()?;
    let mut beacon_auth = false;
    let target = match host {
        Some(host) => {
            // `HOST:PORT,HOST:PORT`: nodes of one cluster, tried in turn after a loss. Known
            // (pin, secrets) by the whole list, so every node must present the same certificate.
            let address = host
                .split(',')
                .map(parse_target)
                .collect::<Result<Vec<_>, _>>()?
                .join(",");
            Target {
                server: address.clone(),
                address,
                discovered: None,
            }
        }
        None => {
            let opts = discovery::Options {
                timeout: discover_timeout,
                port: args.discover_port,
                hosts: discovery::hosts_from_env(std::env::var("LANCHAT_HOSTS").ok().as_deref()),
                interfaces: args.interfaces.selected(),
                broadcast: true,
            };
            let (found, mates) =
                pick_server(&opts, mode == Mode::Interactive, known.as_ref()).await?;
            beacon_auth = found.auth;
            // The other nodes of its cluster heard too: failed over to after a loss.
            let address = std::iter::once(found.address)
                .chain(mates)
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",");
            Target {
                server: found.name.clone(),
                address,
                discovered: Some(found.tls_sha256.as_deref().and_then(Fingerprint::parse)),
            }
        }
    };
    let security = security(args.no_tls, flag_pin, known.as_ref(), &target);
    // Its beacon says the server wants a password: ask for it now rather than be refused. It is
    // sent only in a hello, after the dial has checked the certificate against its pin.
    let password = match password {
        None if beacon_auth && mode == Mode::Interactive => {
            Some(session::ask_password(&target.server).await?)
        }
        password => password,
    };
    let secrets = crate::secrets::Secrets::from_env();
    if security == Security::Plain {
        let what = match (
            password.is_some(),
            secrets.get(&target.server, &nick).is_some(),
        ) {
            (true, true) => Some("the password and your nick's secret travel"),
            (true, false) => Some("the password travels"),
            (false, true) => Some("your registered nick's secret travels"),
            (false, false) => None,
        };
        if let Some(what) = what {
            eprintln!(
                "lanchat: warning: no TLS to {}: {what} in clear text",
                target.address
            );
        }
    }
    let color = mode == Mode::Interactive
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or_empty()
        && config.color != Some(false);
    let extras = config.extras(args.log, &target.server);
    let dialer = Box::new(SecureDialer::new(
        TcpDialer::new(target.address),
        target.server,
        security,
        known,
        password.is_some(),
    ));
    let opts = session::Options {
        nick,
        password,
        room,
        mode,
        color,
        bell: !args.no_bell && config.bell != Some(false),
        secrets,
        ask_password: mode == Mode::Interactive,
        extras,
    };

    if mode == Mode::Interactive {
        let _terminal = repl::TerminalGuard::save();
        let mut session = Session::new(opts, dialer, Box::new(StdScreen), None);
        session.start().await?;
        let shared = Arc::new(repl::Shared::new());
        session.set_screen(Box::new(StdScreen), Some(shared.clone()));
        let repl = repl::start(repl::history_path(), shared)?;
        session.set_screen(Box::new(repl.screen), Some(repl.shared));
        session.run(repl.input).await
    } else {
        let mut session = Session::new(opts, dialer, Box::new(StdScreen), None);
        session.start().await?;
        session.run(stdin_lines()).await
    }
}

trait EmptyIsNone {
    fn is_none_or_empty(&self) -> bool;
}

impl EmptyIsNone for Option<std::ffi::OsString> {
    /// NO_COLOR counts only when set to a non-empty value (no-color.org).
    fn is_none_or_empty(&self) -> bool {
        self.as_ref().is_none_or(|v| v.is_empty())
    }
}

/// Lines of stdin, read on a thread of their own; the channel closes at end of input.
fn stdin_lines() -> mpsc::Receiver<repl::Typed> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut reader = stdin.lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.blocking_send(line.into()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Where to connect, and what the user knows that server by (its key in the known-servers
/// file: the name of a discovered server, the `HOST:PORT` given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub server: String,
    /// Found by discovery, with the fingerprint its beacon announced (`None`: plain only).
    pub discovered: Option<Option<Fingerprint>>,
}

/// The certificate to trust, in order: none with `--no-tls`; `--tls-fingerprint`; the pin
/// recorded for this server; for a first contact through discovery, the beacon's fingerprint
/// (recorded once the handshake succeeds), or plain when the beacon announces no TLS; given by
/// address and never seen, whatever certificate the server presents (recorded: trust on first
/// use). A recorded pin is never bypassed by what a beacon says.
pub fn security(
    no_tls: bool,
    flag: Option<Fingerprint>,
    known: Option<&KnownServers>,
    target: &Target,
) -> Security {
    if no_tls {
        return Security::Plain;
    }
    if let Some(pin) = flag {
        return Security::Pinned {
            pin,
            source: PinSource::Flag,
            record: false,
        };
    }
    if let Some((known, pin)) = known.and_then(|k| Some((k, k.get(&target.server)?))) {
        return Security::Pinned {
            pin,
            source: PinSource::Known(known.path().to_owned()),
            record: false,
        };
    }
    match target.discovered {
        Some(Some(pin)) => Security::Pinned {
            pin,
            source: PinSource::Beacon,
            record: true,
        },
        Some(None) => Security::Plain,
        None => Security::Learn,
    }
}

/// The known-servers file, if there is a data directory to keep it in.
fn load_known() -> Result<Option<KnownServers>, Error> {
    let Some(path) = trust::default_path() else {
        return Ok(None);
    };
    KnownServers::load(path.clone()).map(Some).map_err(|e| {
        Error::Fatal(format!(
            "cannot read the known servers in {}: {e}",
            path.display()
        ))
    })
}

/// `lanchat trust`: list the pins, show one, or pin a certificate for a server.
fn trust_command(args: TrustArgs) -> Result<(), Error> {
    let mut known = load_known()?.ok_or_else(|| {
        Error::Usage("no data directory for the known servers: set XDG_DATA_HOME or HOME".into())
    })?;
    let mut stdout = std::io::stdout().lock();
    match (args.server, args.fingerprint) {
        (None, _) => {
            for (server, fp) in known.entries() {
                let _ = writeln!(stdout, "{fp} {server}");
            }
        }
        (Some(server), None) => match known.get(&server) {
            Some(fp) => {
                let _ = writeln!(stdout, "{fp} {server}");
            }
            None => {
                return Err(Error::Fatal(format!(
                    "{server}: no certificate recorded in {}",
                    known.path().display()
                )))
            }
        },
        (Some(server), Some(hex)) => {
            let fp = Fingerprint::parse(hex.trim()).ok_or_else(|| {
                Error::Usage(format!("{hex:?} is not a fingerprint (64 hex digits)"))
            })?;
            let before = known.get(&server);
            known.set(&server, fp).map_err(|e| {
                Error::Fatal(format!("cannot write {}: {e}", known.path().display()))
            })?;
            let was = match before {
                Some(old) if old == fp => " (unchanged)".to_owned(),
                Some(old) => format!(", replacing {}", trust::short(&old)),
                None => String::new(),
            };
            let _ = writeln!(
                stdout,
                "{server}: trusting {} ({fp}){was}; recorded in {}",
                trust::short(&fp),
                known.path().display()
            );
        }
    }
    Ok(())
}

/// A bad `--interface` is bad usage (status 2); anything else a failure.
fn discovery_failed(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::InvalidInput => Error::Usage(e.to_string()),
        _ => Error::Fatal(format!("discovery failed: {e}")),
    }
}

/// Discover servers and choose one: the only one, or the user's pick. Never one that another
/// source contradicts (a conflict): the user must name it.
async fn pick_server(
    opts: &discovery::Options,
    interactive: bool,
    known: Option<&KnownServers>,
) -> Result<(Found, Vec<SocketAddr>), Error> {
    if interactive {
        eprintln!("looking for lanchat servers on the LAN...");
    }
    let report = discovery::discover(opts).await.map_err(discovery_failed)?;
    let mut servers: Vec<Found> = report
        .servers
        .iter()
        .filter(|s| s.state == ServerState::Up)
        .cloned()
        .collect();
    if let Some(known) = known {
        discovery::mark_pins(&mut servers, known);
    }
    if servers.iter().any(|s| s.conflict) {
        for line in discovery::table(&servers) {
            eprintln!("{line}");
        }
        return Err(Error::Usage(conflict_explanation(&servers)));
    }
    match servers.len() {
        0 => {
            for line in report.nothing_found() {
                eprintln!("{line}");
            }
            Err(if interactive {
                Error::Fatal("no server found".into())
            } else {
                Error::Usage("no server found; give one as HOST[:PORT]".into())
            })
        }
        1 => {
            let s = servers.remove(0);
            eprintln!("found {} at {}", s.name, s.address);
            Ok((s, Vec::new()))
        }
        n => {
            for line in discovery::table(&servers) {
                eprintln!("{line}");
            }
            if !interactive {
                return Err(Error::Usage(format!(
                    "{n} servers found; give one as HOST[:PORT]"
                )));
            }
            let choice = tokio::task::spawn_blocking(move || ask_choice(n))
                .await
                .map_err(|e| Error::Fatal(e.to_string()))??;
            let mates = discovery::cluster_mates(&servers[choice], &servers);
            Ok((servers.swap_remove(choice), mates))
        }
    }
}

/// Why lanchat will not choose: who claims what, and how to pick one explicitly.
fn conflict_explanation(servers: &[Found]) -> String {
    let mut lines = vec![
        "conflict: more than one address claims the same server (marked CONFLICT above); one of          them may be an impostor, so lanchat will not choose"
            .to_owned(),
    ];
    for s in servers.iter().filter(|s| s.conflict) {
        let fp = s.tls_sha256.as_deref().unwrap_or("none (plain)");
        lines.push(format!(
            "  {} at {} (instance {}, certificate {fp})",
            s.name, s.address, s.instance
        ));
    }
    lines.push(
        "ask the server's operator for its address and the fingerprint it prints at start          (tls_sha256), then connect to it explicitly: lanchat ADDRESS --tls-fingerprint HEX"
            .to_owned(),
    );
    lines.join("\n")
}

fn ask_choice(n: usize) -> Result<usize, Error> {
    let stdin = std::io::stdin();
    loop {
        eprint!("connect to which server? [1-{n}] ");
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => return Err(Error::Fatal("no server chosen".into())),
            Ok(_) => {}
        }
        match line.trim().parse::<usize>() {
            Ok(i) if (1..=n).contains(&i) => return Ok(i - 1),
            _ => eprintln!("type a number from 1 to {n}"),
        }
    }
}

#[cfg(test)]
mod tests;
