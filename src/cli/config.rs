//! `coalition serve --config FILE`: a TOML file whose keys are the flag names of
//! `coalition serve` (without `--`), turned into arguments placed before the command line's, so
//! that a flag given on the command line wins. The accepted keys are read from the clap
//! definition itself, so every serve flag (those added later included) can be set in the file
//! and nothing else: an unknown key is refused with its name and the file.
//!
//! Precedence: command line, then the file, then environment variables, then defaults.

use anyhow::{Context, Result, bail};
use clap::Command;
use std::ffi::OsString;
use std::path::Path;

/// The most bytes read from a config file.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The arguments the TOML text `text` (read from `file`) stands for, for the subcommand
/// `serve` (its clap definition).
pub fn arguments(serve: &Command, file: &Path, text: &str) -> Result<Vec<OsString>> {
    let table: toml::Table =
        toml::from_str(text).with_context(|| format!("{}: not valid TOML", file.display()))?;
    let mut args = Vec::new();
    for (key, value) in &table {
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && a.get_id() != "config")
            .ok_or_else(|| {
                let known: Vec<&str> = serve
                    .get_arguments()
                    .filter_map(|a| a.get_long())
                    .filter(|l| *l != "config" && *l != "help")
                    .collect();
                anyhow::anyhow!(
                    "{}: unknown key '{}' (the keys are the flags of coalition serve: {})",
                    file.display(),
                    crate::text::escape_control(key),
                    known.join(", ")
                )
            })?;
        let flag = format!("--{key}");
        let takes_value = arg.get_action().takes_values();
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for value in values {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) if !takes_value => {
                    if *b {
                        args.push(OsString::from(&flag));
                    }
                    continue;
                }
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Datetime(d) => d.to_string(),
                toml::Value::Array(_) | toml::Value::Table(_) => bail!(
                    "{}: key '{key}' must be a string, number or boolean (or an array of them)",
                    file.display()
                ),
            };
            if !takes_value {
                bail!(
                    "{}: key '{key}' is a switch: write {key} = true or false",
                    file.display()
                );
            }
            args.push(OsString::from(&flag));
            args.push(OsString::from(text));
        }
    }
    Ok(args)
}

/// Reads `file` (at most [`MAX_CONFIG_BYTES`]) and returns its arguments for `serve`.
pub fn read(serve: &Command, file: &Path) -> Result<Vec<OsString>> {
    let text = super::read_text_file(file, MAX_CONFIG_BYTES, "the config file")?;
    arguments(serve, file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn serve() -> Command {
        Command::new("serve")
            .arg(Arg::new("listen").long("listen"))
            .arg(Arg::new("cache-mib").long("cache-mib"))
            .arg(
                Arg::new("verbose")
                    .long("verbose")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("member").long("member").action(ArgAction::Append))
            .arg(Arg::new("config").long("config"))
    }

    fn check(text: &str, expected: Result<&[&str], &str>) {
        let got = arguments(&serve(), Path::new("hub.toml"), text)
            .map(|args| {
                args.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .map_err(|e| format!("{e:#}"));
        match (got, expected) {
            (Ok(args), Ok(want)) => assert_eq!(args, want, "{text}"),
            (Err(e), Err(want)) => assert!(e.contains(want), "{text}: {e}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn keys_become_flags() {
        check("", Ok(&[]));
        check("listen = \"127.0.0.1:1\"", Ok(&["--listen", "127.0.0.1:1"]));
        check("cache-mib = 64", Ok(&["--cache-mib", "64"]));
        check("verbose = true", Ok(&["--verbose"]));
        check("verbose = false", Ok(&[]));
        check(
            "member = [\"a\", \"b\"]",
            Ok(&["--member", "a", "--member", "b"]),
        );
        check("listne = \"x\"", Err("hub.toml: unknown key 'listne'"));
        check("config = \"other.toml\"", Err("unknown key 'config'"));
        check("verbose = \"yes\"", Err("key 'verbose' is a switch"));
        check(
            "[listen]\nx = 1",
            Err("must be a string, number or boolean"),
        );
        check("listen = ", Err("hub.toml: not valid TOML"));
    }
}
