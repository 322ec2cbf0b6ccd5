//! `lanchat`: parse the command line, run, and turn the outcome into an exit status.

use std::process::ExitCode;

use clap::Parser;
use lanchat::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("lanchat: {first} (see lanchat --help)");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LANCHAT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match lanchat::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The message may quote the server (a refusal, a goodbye): filtered for the terminal.
            let lines: Vec<String> = e.to_string().lines().map(lanchat::sanitize::text).collect();
            eprintln!("lanchat: {}", lines.join("\n"));
            ExitCode::from(e.exit_code())
        }
    }
}
