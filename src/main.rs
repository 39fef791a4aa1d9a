//! The `coalition` binary: parses arguments and runs the command; errors print one line, with
//! control characters escaped (`text::escape_control`): messages quote untrusted input.

use coalition_hub::cli::{Cli, LogFormat, ParseError, one_line};
use coalition_hub::sync::SyncError;
use coalition_hub::text::escape_control;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::parse_with_config(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(ParseError::Usage(e)) if !e.use_stderr() => e.exit(), // --help, --version
        Err(ParseError::Usage(mut e)) => {
            escape_quoted_args(&mut e);
            print_error_line(&one_line_usage_error(&e.to_string()));
            return std::process::ExitCode::from(2);
        }
        Err(ParseError::Config(e)) => {
            print_error_line(&format!("error: {}", one_line(&e)));
            return std::process::ExitCode::from(2);
        }
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.trim().is_empty() => EnvFilter::new(filter),
        _ => EnvFilter::new(cli.default_log_filter()),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format() {
        LogFormat::Json => logs.json().init(),
        // Colours only for a person at a terminal, never in a file or a journal.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            print_error_line(&format!("error: {}", one_line(&e)));
            // A server that is merely behind, or shutting down, is not a failure of trust: a
            // distinct code lets scripts retry later or elsewhere.
            let retry = e.chain().any(|c| {
                matches!(
                    c.downcast_ref(),
                    Some(SyncError::Behind(_) | SyncError::Unavailable { .. })
                )
            });
            std::process::ExitCode::from(if retry { EXIT_RETRY } else { 1 })
        }
    }
}

/// Exit code of `coalition sync` when nothing is wrong with what it verified but the server
/// cannot serve it now: it is behind what this member already verified, or it is shutting
/// down (or unavailable). Everything proven is saved: run it again later or elsewhere.
const EXIT_RETRY: u8 = 3;

/// Prints an error line to stderr. Every error goes through here: the message may quote a file,
/// an argument or the hub, so control characters are escaped and it stays one line that cannot
/// move the cursor or recolour the terminal.
fn print_error_line(line: &str) {
    eprintln!("{}", escape_control(line));
}

/// Escapes the arguments a clap usage error quotes (an unknown argument, an invalid value)
/// before it is rendered, so a newline in one shows as `\n` instead of splitting the message
/// that [`one_line_usage_error`] cuts at line boundaries.
fn escape_quoted_args(e: &mut clap::Error) {
    use clap::error::ContextValue;
    let escape = |s: &String| escape_control(s).into_owned();
    let escaped: Vec<_> = e
        .context()
        .filter_map(|(kind, value)| match value {
            ContextValue::String(s) => Some((kind, ContextValue::String(escape(s)))),
            ContextValue::Strings(v) => {
                Some((kind, ContextValue::Strings(v.iter().map(escape).collect())))
            }
            _ => None,
        })
        .collect();
    for (kind, value) in escaped {
        e.insert(kind, value);
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
