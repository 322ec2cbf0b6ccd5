//! Starting a server from its command line, as functions `main` calls and tests can too: check
//! the arguments and open the data directory ([`prepare`]), then bind every socket
//! ([`bind`], inside the runtime). Each failure is a [`StartError`] that knows its exit code.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use tracing::{info, warn};

use crate::listener::{bind_tcp, bind_unix};
use crate::store::{Store, StoreError};
use crate::tls::TlsError;
use crate::{discovery, Args, Bound, Config, Listener};

/// Descriptors kept in reserve (runtime, listeners, log) so that a connection over the cap can
/// still be accepted and told `server_full`, rather than left unaccepted.
const RESERVED_FDS: usize = 32;

/// Why a server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag value that cannot work; the message names the flag.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The certificate or key cannot be read, made, or do not form a pair.
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {what}: {source}")]
    Listen {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "cannot bind UDP discovery port {port}: {source} (use --announce-port or --no-announce)"
    )]
    Discovery { port: u16, source: std::io::Error },
    /// `--cluster` was given and NATS cannot be reached (or refused the stream or bucket).
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Serve(#[from] crate::Error),
}

impl StartError {
    /// 2 for what the user asked for (a bad flag, a data directory in use), 1 for what the
    /// system refused (a port taken, no runtime), 3 for a cluster that cannot be joined.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Usage(_) | StartError::Store(_) | StartError::Tls(_) => 2,
            StartError::Listen { .. }
            | StartError::Discovery { .. }
            | StartError::Runtime(_)
            | StartError::Serve(_) => 1,
            StartError::Cluster(_) => 3,
        }
    }
}

/// Everything decided before the first socket is bound.
pub struct Prepared {
    pub config: Config,
    /// Runtime worker threads.
    pub threads: usize,
    /// TCP addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Whether `listen` was given (otherwise a missing IPv6 is only a warning).
    explicit_listen: bool,
    unix: Option<PathBuf>,
    /// The locked data directory and what it held.
    store: Option<(Store, crate::store::Loaded)>,
}

/// Check the arguments, open the data directory, and fit `--max-clients` to the open-files
/// limit (raising the soft limit to the hard one first).
pub fn prepare(args: Args) -> Result<Prepared, StartError> {
    let explicit_listen = !args.listen.is_empty();
    let listen = if explicit_listen {
        args.listen.clone()
    } else {
        vec![
            SocketAddr::from(([0, 0, 0, 0], lanchat_protocol::DEFAULT_PORT)),
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, lanchat_protocol::DEFAULT_PORT)),
        ]
    };
    let unix = args.unix.clone();
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let tls_setup = args.tls_setup();
    let mut config = args.into_config().map_err(StartError::Usage)?;
    let store = match &config.data_dir {
        Some(dir) => Some(Store::open(dir, config.history)?),
        None => None,
    };
    // Read once now, so that a damaged accounts file stops the server before it says it listens
    // (`run` reads it again, the directory still locked).
    crate::accounts::Accounts::open(config.data_dir.as_deref(), config.max_accounts)
        .map_err(|e| StartError::Usage(e.to_string()))?;
    // After the store: the data directory is locked, so no other server writes the pair there.
    if let Some((tls, made)) =
        crate::tls::setup(&tls_setup, config.data_dir.as_deref(), &config.name)?
    {
        info!(
            tls_sha256 = tls.fingerprint(),
            cert = %crate::logsafe::field(&tls.cert_path.display().to_string()),
            made,
            "TLS accepted on the TCP listeners"
        );
        config.tls = Some(tls);
    }
    let reserve = RESERVED_FDS
        + if config.data_dir.is_some() {
            crate::store::MAX_OPEN_FILES
        } else {
            0
        };
    fit_max_clients(&mut config, raise_fd_limit(), reserve);
    Ok(Prepared {
        config,
        threads,
        listen,
        explicit_listen,
        unix,
        store,
    })
}

/// Lower `max_clients` so that every admitted client, and one more to refuse, has a descriptor.
pub fn fit_max_clients(config: &mut Config, fd_limit: Option<u64>, reserve: usize) {
    let Some(limit) = fd_limit else {
        return;
    };
    let usable = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserve)
        .max(1);
    if config.max_clients > usable {
        warn!(
            max_clients = config.max_clients,
            open_files_limit = limit,
            lowered_to = usable,
            "--max-clients lowered to fit the open-files limit"
        );
        config.max_clients = usable;
    }
}

/// Raise the soft open-files limit to the hard limit (every client is a file descriptor) and
/// return the limit in force (`None`: unlimited or unknown).
fn raise_fd_limit() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let mut current = soft;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        info!(from = soft, to = hard, "raised the open-files limit");
        current = hard;
    }
    (current != RLIM_INFINITY).then_some(current)
}

/// Bind the listeners and the discovery socket of `prepared`. Must run inside the runtime.
pub fn bind(prepared: Prepared) -> Result<(Bound, Config), StartError> {
    let Prepared {
        config,
        listen,
        explicit_listen,
        unix,
        store,
        ..
    } = prepared;
    let mut listeners = Vec::new();
    for addr in listen {
        match bind_tcp(addr) {
            Ok(l) => listeners.push(Listener::Tcp(l)),
            // The default [::] listener is optional: not every host has IPv6.
            Err(e) if !explicit_listen && addr.is_ipv6() => {
                warn!(%addr, error = %e, "IPv6 not available; listening on IPv4 only")
            }
            Err(source) => {
                return Err(StartError::Listen {
                    what: addr.to_string(),
                    source,
                })
            }
        }
    }
    if let Some(path) = unix {
        let what = path.display().to_string();
        listeners.push(
            bind_unix(path, config.unix_mode)
                .map_err(|source| StartError::Listen { what, source })?,
        );
    }
    let discovery =
        match &config.announce {
            Some(announce) => Some(discovery::bind_socket(announce.port).map_err(|source| {
                StartError::Discovery {
                    port: announce.port,
                    source,
                }
            })?),
            None => None,
        };
    let bound = Bound {
        listeners,
        discovery,
        store,
        cluster: None,
    };
    Ok((bound, config))
}

/// With `--cluster`, join the cluster (after binding, before the server says it listens).
/// A node that keeps its own certificate serves the cluster's instead (`cluster/identity.rs`).
pub async fn join_cluster(bound: &mut Bound, config: &mut Config) -> Result<(), StartError> {
    if let Some(cluster) = &config.cluster {
        let joined = crate::cluster::join(cluster, config.history)
            .await
            .map_err(StartError::Cluster)?;
        info!(cluster = %cluster.name, nats = %cluster.shown_urls(), "joined the cluster");
        if let Some(own) = config.tls.take() {
            config.tls = Some(joined.identity(own).await.map_err(StartError::Cluster)?);
        }
        bound.cluster = Some(joined);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `list` and `--no-tls`: a test must not write a certificate into the user's state
    /// directory (the one test of TLS at start gives a data directory).
    fn args(list: &[&str]) -> Args {
        tls_args(list.iter().copied().chain(["--no-tls"]))
    }

    fn tls_args<'a>(list: impl IntoIterator<Item = &'a str>) -> Args {
        Args::try_parse_from(std::iter::once("lanchat-server").chain(list)).expect("flags parse")
    }

    #[test]
    fn tls_is_on_by_default_and_a_broken_pair_is_exit_code_2() {
        let dir =
            std::env::temp_dir().join(format!("lanchat-startup-tls-{}", uuid::Uuid::new_v4()));
        let data = dir.to_str().unwrap();
        let p = prepare(tls_args(["--no-announce", "--data-dir", data])).unwrap();
        let tls = p.config.tls.clone().expect("TLS on");
        assert_eq!(tls.cert_path, dir.join("tls").join("cert.pem"));
        drop(p); // unlocks the data directory
        std::fs::write(dir.join("tls").join("cert.pem"), "garbage").unwrap();
        let Err(e) = prepare(tls_args(["--no-announce", "--data-dir", data])) else {
            panic!("refused");
        };
        assert!(matches!(e, StartError::Tls(_)), "{e}");
        assert_eq!(e.exit_code(), 2);
        let no_tls = prepare(args(&["--no-announce"])).unwrap();
        assert!(no_tls.config.tls.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn defaults_listen_on_both_families_of_the_default_port() {
        let p = prepare(args(&["--no-announce"])).unwrap();
        assert_eq!(
            p.listen,
            [
                "0.0.0.0:7878".parse::<SocketAddr>().unwrap(),
                "[::]:7878".parse().unwrap()
            ]
        );
        assert!(!p.explicit_listen);
        assert_eq!(p.threads, 1);
    }

    #[test]
    fn a_bad_value_is_a_usage_error_with_exit_code_2() {
        let Err(e) = prepare(args(&["--default-room", "no spaces"])) else {
            panic!("refused");
        };
        assert!(matches!(e, StartError::Usage(_)));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("--default-room"), "{e}");
    }

    #[test]
    fn max_clients_is_lowered_to_fit_the_descriptors() {
        let mut config = Config::default();
        fit_max_clients(&mut config, Some(1024), 32);
        assert_eq!(config.max_clients, 992);
        fit_max_clients(&mut config, None, 32);
        assert_eq!(config.max_clients, 992, "no limit known: unchanged");
        fit_max_clients(&mut config, Some(10), 32);
        assert_eq!(config.max_clients, 1, "never zero");
    }

    #[tokio::test]
    async fn a_taken_port_is_a_listen_error_with_exit_code_1() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let p = prepare(args(&["--listen", &addr, "--no-announce"])).unwrap();
        let Err(e) = bind(p) else {
            panic!("refused");
        };
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains(&addr), "{e}");
    }

    #[tokio::test]
    async fn binds_what_it_was_given() {
        let p = prepare(args(&["--listen", "127.0.0.1:0", "--no-announce"])).unwrap();
        let (bound, config) = bind(p).unwrap();
        assert_eq!(bound.listeners.len(), 1);
        assert!(bound.listeners[0].tcp_addr().unwrap().port() != 0);
        assert!(bound.discovery.is_none() && config.announce.is_none());
    }
}
