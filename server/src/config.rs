//! Server settings: the command line (every flag also settable as `LANCHAT_<NAME>`) and the
//! validated `Config` that `run` takes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use lanchat_protocol::{validate, Limits};

use crate::tls::{Tls, TlsSetup};

/// Longest server display name, in bytes (beacons are at most 1,200 bytes).
pub const MAX_NAME_BYTES: usize = 200;

/// Bytes of a `say` or `dm` request besides its text, with a plain id and room name: what
/// `max_line` must hold on top of the escaped text.
pub const REQUEST_OVERHEAD: usize = 512;

/// Smallest `--max-line`: room for the overhead and a text of 256 bytes.
pub const MIN_MAX_LINE: u32 = 1024;

/// The longest text that always fits in a line of `max_line` bytes. A valid text escapes to at
/// most 2 bytes a byte in JSON (`\n`, `\t`, `\"`, `\\`; other control characters are refused,
/// other characters may be sent raw), so 2 x text + overhead must fit.
pub fn max_text_for(max_line: usize) -> usize {
    max_line.saturating_sub(REQUEST_OVERHEAD) / 2
}

/// Mode of the Unix socket unless `--unix-mode` says otherwise: the owner and the group.
pub const DEFAULT_UNIX_MODE: u32 = 0o660;

/// A file mode in octal, as chmod takes it (`660`, `0660`), permission bits only.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!("{text:?} is not an octal mode such as 0660"));
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
    if mode > 0o777 {
        return Err(format!(
            "{text} sets setuid, setgid or sticky bits; only permission bits (at most 0777)"
        ));
    }
    Ok(mode)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// lanchat-server: a chat server for the local network.
#[derive(Debug, Parser)]
#[command(name = "lanchat-server", version, about, max_term_width = 100)]
pub struct Args {
    /// Address to listen on for TCP; may be repeated [default: 0.0.0.0:7878 and [::]:7878]
    #[arg(long, env = "LANCHAT_LISTEN", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,
    /// Also listen on this Unix domain socket path
    #[arg(long, env = "LANCHAT_UNIX")]
    pub unix: Option<PathBuf>,
    /// Mode of the Unix socket, in octal (connecting needs write permission): 0660 lets the
    /// owner and the group in, 0600 the owner only, 0666 every local user
    #[arg(long, env = "LANCHAT_UNIX_MODE", default_value = "0660")]
    pub unix_mode: String,
    /// Display name announced in welcome and beacons [default: the host name]
    #[arg(long, env = "LANCHAT_NAME")]
    pub name: Option<String>,
    /// Message of the day sent in welcome
    #[arg(long, env = "LANCHAT_MOTD", default_value = "")]
    pub motd: String,
    /// Password clients must give in hello
    #[arg(long, env = "LANCHAT_PASSWORD", conflicts_with = "password_file")]
    pub password: Option<String>,
    /// Read the password from this file (first line)
    #[arg(long, env = "LANCHAT_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Room every session joins after hello
    #[arg(long, env = "LANCHAT_DEFAULT_ROOM", default_value = "lobby")]
    pub default_room: String,
    /// Keep history on disk in this directory (otherwise in memory only)
    #[arg(long, env = "LANCHAT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Messages of history kept per room
    #[arg(long, env = "LANCHAT_HISTORY", default_value_t = 1000)]
    pub history: usize,
    /// Memory for history, all rooms together, in MiB; beyond, the oldest messages of rooms without
    /// members go first (with --data-dir they stay on disk)
    #[arg(long, env = "LANCHAT_HISTORY_MEMORY", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub history_memory: u64,
    /// Most connections at once
    #[arg(long, env = "LANCHAT_MAX_CLIENTS", default_value_t = 10_000)]
    pub max_clients: usize,
    /// Most connections at once from one IP address
    #[arg(long, env = "LANCHAT_MAX_PER_IP", default_value_t = 64)]
    pub max_per_ip: usize,
    /// Most rooms held in memory (with or without members); beyond, the room without members the
    /// longest is forgotten, and when all have members a new room is refused
    #[arg(long, env = "LANCHAT_MAX_ROOMS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_rooms: u64,
    /// Most registered nicks (accounts); beyond, `register` of a new nick is refused (in cluster
    /// mode, counted across the cluster)
    #[arg(long, env = "LANCHAT_MAX_ACCOUNTS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub max_accounts: u64,
    /// With --data-dir: seconds a room without members stays in memory; then it is forgotten
    /// (its history and topic stay on disk and come back when the room is named again). Without
    /// --data-dir rooms are kept until --max-rooms or --history-memory needs the space
    #[arg(long, env = "LANCHAT_ROOM_IDLE", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=7 * 24 * 3600))]
    pub room_idle: u64,
    /// Longest accepted line in bytes
    #[arg(long, env = "LANCHAT_MAX_LINE", default_value_t = lanchat_protocol::DEFAULT_MAX_LINE as u32,
          value_parser = clap::value_parser!(u32).range(MIN_MAX_LINE as i64..=16 * 1024 * 1024))]
    pub max_line: u32,
    /// Longest message text in bytes; 2 x max-text + 512 must fit in max-line
    /// [default: 4096, or (max-line - 512) / 2 when that is smaller]
    #[arg(long, env = "LANCHAT_MAX_TEXT",
          value_parser = clap::value_parser!(u32).range(1..=16 * 1024 * 1024))]
    pub max_text: Option<u32>,
    /// Messages a session may send in a burst
    #[arg(long, env = "LANCHAT_RATE_BURST", default_value_t = lanchat_protocol::DEFAULT_RATE_BURST)]
    pub rate_burst: u32,
    /// Messages per second a session may sustain (0 = no limit)
    #[arg(long, env = "LANCHAT_RATE_PER_SEC", default_value_t = lanchat_protocol::DEFAULT_RATE_PER_SEC)]
    pub rate_per_sec: u32,
    /// Seconds of client silence before the server pings
    #[arg(long, env = "LANCHAT_PING_INTERVAL", default_value_t = lanchat_protocol::DEFAULT_PING_INTERVAL_S,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub ping_interval: u64,
    /// Seconds a new connection has to send hello
    #[arg(long, env = "LANCHAT_HELLO_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub hello_timeout: u64,
    /// UDP port for discovery: beacons and answers to discover queries
    #[arg(long, env = "LANCHAT_ANNOUNCE_PORT", default_value_t = lanchat_protocol::DEFAULT_ANNOUNCE_PORT)]
    pub announce_port: u16,
    /// Seconds between beacons
    #[arg(long, env = "LANCHAT_ANNOUNCE_INTERVAL", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub announce_interval: u64,
    /// Do not announce on the LAN or answer discovery
    #[arg(long, env = "LANCHAT_NO_ANNOUNCE")]
    pub no_announce: bool,
    /// Runtime worker threads; 0 = one per CPU core. One is the cheapest per message (a chat
    /// message is little work, and cross-core wake-ups cost more than they give; BENCHMARKS.md)
    #[arg(long, env = "LANCHAT_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Log format on stderr
    #[arg(long, env = "LANCHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Certificate to present to TLS clients (PEM, the server's first, then any chain), instead of
    /// the self-signed one the server makes and keeps (in --data-dir/tls, else
    /// $XDG_STATE_HOME/lanchat-server/tls); needs --tls-key
    #[arg(long, env = "LANCHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "LANCHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse plain TCP connections (error and bye `tls_required`); the Unix socket stays plain
    #[arg(long, env = "LANCHAT_REQUIRE_TLS")]
    pub require_tls: bool,
    /// No TLS: plain JSON lines only, no certificate, no tls_sha256 in beacons
    #[arg(long, env = "LANCHAT_NO_TLS", conflicts_with_all = ["tls_cert", "tls_key", "require_tls"])]
    pub no_tls: bool,
    /// No web app: no HTTP and no WebSocket on the chat port (an HTTP request is then just a bad
    /// JSON line)
    #[arg(long, env = "LANCHAT_NO_WEB")]
    pub no_web: bool,
    /// Also let pages from this origin (scheme://host[:port]) open the WebSocket; may be repeated
    /// or comma-separated. The server's own origin is always allowed
    #[arg(
        long,
        env = "LANCHAT_WEB_ORIGIN",
        value_delimiter = ',',
        conflicts_with = "no_web"
    )]
    pub web_origin: Vec<String>,
    /// Join a cluster through NATS JetStream at these URLs (nats://HOST:PORT, comma-separated):
    /// nodes of one cluster act as one chat. Without it the server runs alone and needs no NATS
    #[arg(
        long,
        env = "LANCHAT_CLUSTER",
        value_delimiter = ',',
        conflicts_with = "data_dir"
    )]
    pub cluster: Vec<String>,
    /// The cluster's name, part of its NATS stream, bucket and subject names (1 to 32 of
    /// A-Z a-z 0-9 _ -)
    #[arg(long, env = "LANCHAT_CLUSTER_NAME", default_value = "lanchat")]
    pub cluster_name: String,
    /// Cluster mode: seconds a node that stopped renewing keeps its nicks and members (it renews
    /// every third of it)
    #[arg(long, env = "LANCHAT_CLUSTER_LEASE_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub cluster_lease_secs: u64,
    /// Cluster mode: copies JetStream keeps of the stream and the buckets (1 to 5; more than 1
    /// needs a NATS cluster of at least as many servers, and survives the loss of a minority)
    #[arg(long, env = "LANCHAT_CLUSTER_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub cluster_replicas: u8,
}

/// Everything `run` needs besides its listeners.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub motd: String,
    pub password: Option<String>,
    pub default_room: String,
    pub data_dir: Option<PathBuf>,
    pub history: usize,
    pub max_clients: usize,
    pub max_per_ip: usize,
    /// Rooms held in memory at most (see [`Args::max_rooms`]).
    pub max_rooms: usize,
    /// Registered nicks at most (`--max-accounts`).
    pub max_accounts: usize,
    /// Bytes of history held in memory at most, all rooms together.
    pub history_memory: usize,
    /// With a data directory, how long a room without members stays in memory.
    pub room_idle: Duration,
    pub limits: Limits,
    pub hello_timeout: Duration,
    /// Outbound queue bound, in frames and in bytes.
    pub outbox_frames: usize,
    pub outbox_bytes: usize,
    /// How long shutdown waits for sessions to flush before closing them anyway.
    pub shutdown_grace: Duration,
    pub announce: Option<AnnounceConfig>,
    /// Mode given to the Unix socket (`--unix-mode`).
    pub unix_mode: u32,
    /// The TLS identity, when TCP connections may use TLS (loaded by `startup::prepare`).
    pub tls: Option<Tls>,
    /// Plain TCP connections are refused (`--require-tls`; needs `tls`).
    pub require_tls: bool,
    /// HTTP and WebSocket on the TCP port (not `--no-web`).
    pub web: bool,
    /// Origins besides the server's own whose pages may open the WebSocket (`--web-origin`).
    pub web_origins: Vec<String>,
    /// The cluster to join (`--cluster`); `None`: this server is the whole chat.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

#[derive(Debug, Clone)]
pub struct AnnounceConfig {
    pub port: u16,
    pub interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "lanchat".into(),
            motd: String::new(),
            password: None,
            default_room: "lobby".into(),
            data_dir: None,
            history: 1000,
            max_clients: 10_000,
            max_per_ip: 64,
            max_rooms: 10_000,
            max_accounts: 10_000,
            history_memory: 256 * 1024 * 1024,
            room_idle: Duration::from_secs(600),
            limits: Limits::default(),
            hello_timeout: Duration::from_secs(10),
            outbox_frames: 10_000,
            outbox_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(3),
            announce: None,
            unix_mode: DEFAULT_UNIX_MODE,
            tls: None,
            require_tls: false,
            web: true,
            web_origins: Vec::new(),
            cluster: None,
        }
    }
}

impl Args {
    /// Where the TLS certificate comes from.
    pub fn tls_setup(&self) -> TlsSetup {
        match (&self.tls_cert, &self.tls_key) {
            _ if self.no_tls => TlsSetup::Off,
            (Some(cert), Some(key)) => TlsSetup::Given {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => TlsSetup::Kept,
        }
    }

    /// Check the values clap cannot and build the `Config`. The error is one line for the user.
    pub fn into_config(self) -> Result<Config, String> {
        validate::check_room(&self.default_room)
            .map_err(|(_, m)| format!("--default-room: {m}"))?;
        let password = match (&self.password, &self.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--password-file: cannot read {}: {e}", path.display()))?;
                let first = text.lines().next().unwrap_or("").to_owned();
                if first.is_empty() {
                    return Err(format!("--password-file: {} is empty", path.display()));
                }
                Some(first)
            }
            (None, None) => None,
        };
        if password.as_deref() == Some("") {
            return Err("--password: must not be empty".into());
        }
        if self.max_clients == 0 || self.max_per_ip == 0 {
            return Err("--max-clients and --max-per-ip must be at least 1".into());
        }
        let max_line = self.max_line as usize;
        let fits = max_text_for(max_line);
        let max_text = match self.max_text {
            None => fits.min(lanchat_protocol::DEFAULT_MAX_TEXT),
            Some(t) if t as usize > fits => {
                return Err(format!(
                    "--max-text {t} does not fit in --max-line {max_line}: 2 x max-text + \
                     {REQUEST_OVERHEAD} must be at most max-line, so max-text at most {fits}"
                ))
            }
            Some(t) => t as usize,
        };
        if self.rate_per_sec > 0 && self.rate_burst == 0 {
            return Err("--rate-burst must be at least 1 when --rate-per-sec is set".into());
        }
        let unix_mode = parse_mode(&self.unix_mode).map_err(|e| format!("--unix-mode: {e}"))?;
        let web_origins = self
            .web_origin
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| crate::web::parse_origin(o).map_err(|e| format!("--web-origin: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let name = match self.name {
            Some(n) if n.trim().is_empty() => return Err("--name: must not be empty".into()),
            // The name travels in every beacon, which must stay under 1,200 bytes.
            Some(n) if n.len() > MAX_NAME_BYTES => {
                return Err(format!("--name: at most {MAX_NAME_BYTES} bytes"))
            }
            // Escaped in JSON, a control character takes up to 6 bytes: the bound above would not
            // hold, and such a name would reach every client's screen.
            Some(n) if n.chars().any(char::is_control) => {
                return Err("--name: no control characters".into())
            }
            Some(n) => n,
            None => host_name()
                .filter(|n| n.len() <= MAX_NAME_BYTES)
                .unwrap_or_else(|| "lanchat".into()),
        };
        let cluster = crate::cluster::ClusterConfig::from_flags(
            self.cluster,
            self.cluster_name,
            self.cluster_lease_secs,
            self.cluster_replicas,
        )?;
        Ok(Config {
            name,
            motd: self.motd,
            password,
            default_room: self.default_room,
            data_dir: self.data_dir,
            history: self.history,
            max_clients: self.max_clients,
            max_per_ip: self.max_per_ip,
            max_rooms: self.max_rooms as usize,
            max_accounts: self.max_accounts as usize,
            history_memory: usize::try_from(self.history_memory * 1024 * 1024)
                .unwrap_or(usize::MAX),
            room_idle: Duration::from_secs(self.room_idle),
            limits: Limits {
                max_line,
                max_text,
                rate_burst: self.rate_burst,
                rate_per_sec: self.rate_per_sec,
                ping_interval_s: self.ping_interval,
                // --rate-per-sec 0 turns every budget off (benchmarks, soaks, trusted bridges).
                ..if self.rate_per_sec == 0 {
                    Limits {
                        events_per_sec: Some(0),
                        reply_bytes_per_sec: Some(0),
                        ..Limits::default()
                    }
                } else {
                    Limits::default()
                }
            },
            hello_timeout: Duration::from_secs(self.hello_timeout),
            announce: (!self.no_announce).then(|| AnnounceConfig {
                port: self.announce_port,
                interval: Duration::from_secs(self.announce_interval),
            }),
            unix_mode,
            require_tls: self.require_tls,
            web: !self.no_web,
            web_origins,
            cluster,
            ..Config::default()
        })
    }
}

fn host_name() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?.into_string().ok()?;
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(flags: &[&str]) -> Result<Config, String> {
        let args = Args::try_parse_from(["lanchat-server"].iter().chain(flags))
            .map_err(|e| e.to_string())?;
        args.into_config()
    }

    fn text_and_line(flags: &[&str]) -> (usize, usize) {
        let limits = config(flags).unwrap().limits;
        (limits.max_text, limits.max_line)
    }

    #[test]
    fn web_flags() {
        let c = config(&[]).unwrap();
        assert!(c.web && c.web_origins.is_empty());
        assert!(!config(&["--no-web"]).unwrap().web);
        let c = config(&[
            "--web-origin",
            "https://Intranet.example/,http://a.lan:8080",
            "--web-origin",
            "http://b.lan",
        ])
        .unwrap();
        assert_eq!(
            c.web_origins,
            [
                "https://intranet.example",
                "http://a.lan:8080",
                "http://b.lan"
            ]
        );
        let err = config(&["--web-origin", "intranet.example"]).unwrap_err();
        assert!(err.starts_with("--web-origin: "), "{err}");
        assert!(config(&["--no-web", "--web-origin", "http://a.lan"]).is_err());
    }

    #[test]
    fn max_text_is_derived_from_max_line_when_not_given() {
        assert_eq!(text_and_line(&[]), (4096, 16384));
        assert_eq!(text_and_line(&["--max-line", "1024"]), (256, 1024));
        assert_eq!(text_and_line(&["--max-line", "2048"]), (768, 2048));
        assert_eq!(text_and_line(&["--max-line", "8703"]), (4095, 8703));
        assert_eq!(text_and_line(&["--max-line", "8704"]), (4096, 8704));
        assert_eq!(text_and_line(&["--max-line", "65536"]), (4096, 65536));
        for max_line in MIN_MAX_LINE..20_000 {
            let text = max_text_for(max_line as usize).min(lanchat_protocol::DEFAULT_MAX_TEXT);
            assert!(text >= 1 && 2 * text + REQUEST_OVERHEAD <= max_line as usize);
        }
    }

    #[test]
    fn a_given_max_text_must_fit_in_max_line() {
        assert_eq!(
            text_and_line(&["--max-line", "1024", "--max-text", "256"]),
            (256, 1024)
        );
        assert_eq!(text_and_line(&["--max-text", "7936"]), (7936, 16384));
        assert_eq!(text_and_line(&["--max-text", "1"]), (1, 16384));
        for flags in [
            &["--max-line", "1024", "--max-text", "257"][..],
            &["--max-text", "7937"],
            &["--max-text", "20000"],
        ] {
            let err = config(flags).unwrap_err();
            assert!(err.starts_with("--max-text "), "{flags:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn unix_mode_is_octal_permission_bits() {
        assert_eq!(config(&[]).unwrap().unix_mode, 0o660);
        assert_eq!(config(&["--unix-mode", "0600"]).unwrap().unix_mode, 0o600);
        assert_eq!(config(&["--unix-mode", "666"]).unwrap().unix_mode, 0o666);
        assert_eq!(config(&["--unix-mode", "0"]).unwrap().unix_mode, 0);
        for bad in [
            "",
            "rw-rw----",
            "0o660",
            "0668",
            "-1",
            "1777",
            "4755",
            "00660",
            "9",
        ] {
            let err = config(&[&format!("--unix-mode={bad}")]).unwrap_err();
            assert!(err.starts_with("--unix-mode: "), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn tls_flags_go_together_or_not_at_all() {
        let setup = |flags: &[&str]| {
            Args::try_parse_from(["lanchat-server"].iter().chain(flags))
                .map(|a| a.tls_setup())
                .map_err(|e| e.kind())
        };
        assert_eq!(setup(&[]), Ok(TlsSetup::Kept));
        assert_eq!(setup(&["--no-tls"]), Ok(TlsSetup::Off));
        assert_eq!(
            setup(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]),
            Ok(TlsSetup::Given {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        use clap::error::ErrorKind::*;
        assert_eq!(
            setup(&["--tls-cert", "c.pem"]),
            Err(MissingRequiredArgument)
        );
        assert_eq!(setup(&["--tls-key", "k.pem"]), Err(MissingRequiredArgument));
        assert_eq!(setup(&["--no-tls", "--require-tls"]), Err(ArgumentConflict));
        assert!(config(&["--require-tls"]).unwrap().require_tls);
    }

    #[test]
    fn max_line_has_a_floor() {
        assert!(config(&["--max-line", "1023"]).is_err());
        assert!(config(&["--max-text", "0"]).is_err());
    }
}
