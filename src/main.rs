//! The `coalition` binary: parses arguments and runs the command; errors print one line.

use clap::Parser;
use coalition_hub::cli::{Cli, one_line};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("{}", one_line_usage_error(&e.to_string()));
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(match std::env::var("RUST_LOG") {
            Ok(filter) if !filter.trim().is_empty() => EnvFilter::new(filter),
            _ => EnvFilter::new(cli.default_log_filter()),
        })
        .with_writer(std::io::stderr)
        .init();
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// clap's usage errors on one line: the message without the usage block.
fn one_line_usage_error(rendered: &str) -> String {
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty())
        .collect();
    format!("{} (see --help)", message.join(" "))
}
