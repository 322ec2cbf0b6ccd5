//! `lanchat-server`: parse flags, bind, print `listening <addr>` per listener, run until SIGINT or
//! SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use lanchat_server::config::LogFormat;
use lanchat_server::listener::{bind_tcp, bind_unix};
use lanchat_server::store::Store;
use lanchat_server::{discovery, Args, Bound, Listener};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    let explicit_listen = !args.listen.is_empty();
    let listen = if explicit_listen {
        args.listen.clone()
    } else {
        vec![
            SocketAddr::from(([0, 0, 0, 0], lanchat_protocol::DEFAULT_PORT)),
            SocketAddr::from((
                std::net::Ipv6Addr::UNSPECIFIED,
                lanchat_protocol::DEFAULT_PORT,
            )),
        ]
    };
    let unix = args.unix.clone();
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let config = match args.into_config() {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("lanchat-server: {msg}");
            return ExitCode::from(2);
        }
    };
    let store = match &config.data_dir {
        Some(dir) => match Store::open(dir, config.history) {
            Ok(opened) => Some(opened),
            Err(e) => {
                eprintln!("lanchat-server: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let mut config = config;
    let fd_limit = raise_fd_limit();
    // Keep descriptors in reserve (runtime, listeners, log, history files) so that a connection
    // over the cap can still be accepted and told `server_full`, rather than left unaccepted.
    let reserve = 32
        + if config.data_dir.is_some() {
            lanchat_server::store::MAX_OPEN_FILES
        } else {
            0
        };
    if let Some(limit) = fd_limit {
        let usable = (limit as usize).saturating_sub(reserve).max(1);
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lanchat-server: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let mut listeners = Vec::new();
        for addr in listen {
            match bind_tcp(addr) {
                Ok(l) => listeners.push(Listener::Tcp(l)),
                // The default [::] listener is optional: not every host has IPv6.
                Err(e) if !explicit_listen && addr.is_ipv6() => {
                    warn!(%addr, error = %e, "IPv6 not available; listening on IPv4 only")
                }
                Err(e) => {
                    eprintln!("lanchat-server: cannot listen on {addr}: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        if let Some(path) = unix {
            match bind_unix(path.clone()) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    eprintln!("lanchat-server: cannot listen on {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
        }
        let discovery = match &config.announce {
            Some(announce) => match discovery::bind_socket(announce.port) {
                Ok(socket) => Some(socket),
                Err(e) => {
                    eprintln!(
                        "lanchat-server: cannot bind UDP discovery port {}: {e} (use --announce-port or --no-announce)",
                        announce.port
                    );
                    return ExitCode::from(1);
                }
            },
            None => None,
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));
        let mut stdout = std::io::stdout().lock();
        for l in &listeners {
            let _ = writeln!(stdout, "listening {}", l.describe());
        }
        let _ = stdout.flush();
        drop(stdout);
        let bound = Bound {
            listeners,
            discovery,
            store,
        };
        match lanchat_server::run(bound, config, shutdown).await {
            Ok(()) => {
                info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lanchat-server: {e}");
                ExitCode::from(1)
            }
        }
    })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    shutdown.cancel();
}

/// Raise the soft open-files limit to the hard limit (every client is a file descriptor) and
/// return the limit in force.
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let old = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                info!(from = old, to = lim.rlim_max, "raised the open-files limit");
            } else {
                lim.rlim_cur = old;
            }
        }
    }
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}
