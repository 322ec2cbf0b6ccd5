//! `lanchat-server`: parse flags, prepare and bind ([`lanchat_server::startup`]), print
//! `listening <addr>` per listener (then `tls_sha256 <hex>` when TLS is on), run until SIGINT or
//! SIGTERM.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use lanchat_server::config::LogFormat;
use lanchat_server::startup::{self, StartError};
use lanchat_server::Args;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanchat-server: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn serve(args: Args) -> Result<(), StartError> {
    let prepared = startup::prepare(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(prepared.threads)
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    runtime.block_on(async move {
        let (mut bound, mut config) = startup::bind(prepared)?;
        startup::join_cluster(&mut bound, &mut config).await?;
        let shutdown = CancellationToken::new();
        // Installed here, not in the task: a SIGTERM right after the `listening` line must find
        // the handler in place, or it kills the process before the task first runs.
        let signals = install_signal_handlers();
        tokio::spawn(wait_for_signal(signals, shutdown.clone()));
        let mut stdout = std::io::stdout().lock();
        for l in &bound.listeners {
            let _ = writeln!(stdout, "listening {}", l.describe());
        }
        // After every `listening` line, so that readers of those are not disturbed.
        if let Some(tls) = &config.tls {
            let _ = writeln!(stdout, "tls_sha256 {}", tls.fingerprint());
        }
        let _ = stdout.flush();
        drop(stdout);
        lanchat_server::run(bound, config, shutdown).await?;
        info!("stopped");
        Ok(())
    })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a pipe gets plain text, with no escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

type Signals = Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;

fn install_signal_handlers() -> Signals {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => {
            warn!("cannot install signal handlers");
            None
        }
    }
}

async fn wait_for_signal(signals: Signals, shutdown: CancellationToken) {
    let Some((mut term, mut int)) = signals else {
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    shutdown.cancel();
}
