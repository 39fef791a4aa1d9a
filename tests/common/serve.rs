//! The real `coalition` binary for the tests that drive it without the rest of `common`
//! (included with `#[path]`): one-shot commands run in a working directory holding `certs/`
//! and `data/` ([`coalition`], [`ok`], [`fails`]), and `coalition serve` as a child process on
//! a loopback port, killed (and reaped) when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Runs `coalition ARGS…` in `dir`, with `RUST_LOG` and `COALITION_CERTS` unset so that the
/// defaults (`certs/` in `dir`) apply.
pub fn coalition(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coalition"))
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("COALITION_CERTS")
        .output()
        .expect("run coalition")
}

/// Runs a command expected to succeed; returns its stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    ok_with_stderr(dir, args).0
}

/// Runs a command expected to succeed; returns its stdout and stderr.
pub fn ok_with_stderr(dir: &Path, args: &[&str]) -> (String, String) {
    let out = coalition(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// Checks a finished command failed with exit 1 and one `error: ` line; returns that line.
pub fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "exits 1: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
    stderr
}

/// Runs a command expected to fail with exit 1 and one `error: ` line; returns that line.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    one_error_line(&coalition(dir, args))
}

/// A running `coalition serve`.
pub struct ServeProcess(Child);

impl ServeProcess {
    /// Starts `coalition serve --listen 127.0.0.1:0 EXTRA…` in `dir`; returns it and the address
    /// from its `listening on` line.
    pub fn start(dir: &Path, extra: &[&str]) -> (ServeProcess, String) {
        Self::start_on(dir, "127.0.0.1:0", extra)
    }

    /// Starts `coalition serve --listen LISTEN EXTRA…` in `dir` (a fixed port lets clients
    /// reconnect after a restart); returns it and the address from its `listening on` line.
    pub fn start_on(dir: &Path, listen: &str, extra: &[&str]) -> (ServeProcess, String) {
        Self::start_in(None, dir, listen, extra)
    }

    /// [`ServeProcess::start_on`] inside the network namespace `netns` (`ip netns exec`, which
    /// execs the hub: the child is the hub itself).
    pub fn start_in(
        netns: Option<&str>,
        dir: &Path,
        listen: &str,
        extra: &[&str],
    ) -> (ServeProcess, String) {
        let bin = env!("CARGO_BIN_EXE_coalition");
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .current_dir(dir)
            .args(["serve", "--listen", listen, "--ops-listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let addr = line.trim().strip_prefix("listening on ").map(str::to_owned);
        let hub = ServeProcess(child);
        (
            hub,
            addr.unwrap_or_else(|| panic!("no address in {line:?}")),
        )
    }

    /// SIGKILL: no graceful shutdown.
    pub fn kill(mut self) {
        self.0.kill().expect("kill -9");
        self.0.wait().expect("reap");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `coalition witness run` (killed and reaped when dropped, like [`ServeProcess`]).
pub struct WitnessProcess(ServeProcess);

impl WitnessProcess {
    /// Starts `coalition witness run --data DATA --listen LISTEN --log KEY…`; returns it and the
    /// address from its `witness listening on` line.
    pub fn start(data: &Path, listen: &str, logs: &[&str]) -> (WitnessProcess, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_coalition"));
        command
            .args(["witness", "run", "--listen", listen, "--data"])
            .arg(data)
            .env_remove("RUST_LOG");
        for log in logs {
            command.args(["--log", log]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("witness");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut addr = None;
        let mut seen = String::new();
        for _ in 0..64 {
            let mut line = String::new();
            if out.read_line(&mut line).expect("read") == 0 {
                break;
            }
            if let Some(a) = line.trim().strip_prefix("witness listening on ") {
                addr = Some(a.to_owned());
                break;
            }
            seen.push_str(&line);
        }
        let witness = WitnessProcess(ServeProcess(child));
        (
            witness,
            addr.unwrap_or_else(|| panic!("no address in {seen:?}")),
        )
    }

    /// SIGKILL: no graceful shutdown.
    pub fn kill(self) {
        self.0.kill();
    }
}
