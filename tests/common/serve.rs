//! `coalition serve` as a child process, run in a working directory holding its `certs/` and
//! `data/`, on a fresh loopback port; killed (and reaped) when dropped. Included with `#[path]`
//! by the tests that drive the real binary without the rest of `common`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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
        let mut child = Command::new(env!("CARGO_BIN_EXE_coalition"))
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
