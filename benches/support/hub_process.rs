//! A `coalition serve` child process for the benchmarks: started on 127.0.0.1:0 with the
//! release binary (or `HUB_BENCH_HUB_BINARY`), its address read from its `listening on` line, its memory read from
//! `/proc/<pid>/status`, killed (and waited for) when dropped. Included by the benches with `#[path]`.
#![allow(dead_code)]

use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A `coalition serve` child process.
pub struct Hub {
    child: Child,
    /// The address it listens on.
    pub addr: String,
    // Kept open so the hub never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

/// Memory figures from `/proc/<pid>/status`, in KiB.
pub struct Memory {
    /// VmRSS.
    pub rss_kib: u64,
    /// VmHWM.
    pub hwm_kib: u64,
}

impl Hub {
    /// Starts a hub, retrying briefly while a just-dropped in-process `Store` (whose writer
    /// thread exits asynchronously) still holds sled's lock on `data`.
    pub fn start(certs: &Path, data: &Path, log: &Path, cache_mib: u64) -> Result<Hub> {
        Hub::start_with(
            certs,
            data,
            log,
            cache_mib,
            &["--ops-listen", "127.0.0.1:0"],
        )
    }

    /// As [`Hub::start`], with `extra` arguments for `coalition serve`.
    pub fn start_with(
        certs: &Path,
        data: &Path,
        log: &Path,
        cache_mib: u64,
        extra: &[&str],
    ) -> Result<Hub> {
        let mut attempt = 1;
        loop {
            match Hub::try_start(certs, data, log, cache_mib, extra) {
                Ok(hub) => return Ok(hub),
                Err(e) if attempt >= 40 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn try_start(
        certs: &Path,
        data: &Path,
        log_path: &Path,
        cache_mib: u64,
        extra: &[&str],
    ) -> Result<Hub> {
        let log = std::fs::File::create(log_path)?;
        // `HUB_BENCH_HUB_BINARY` runs another build of the hub (a before/after comparison).
        let binary = std::env::var_os("HUB_BENCH_HUB_BINARY")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_coalition").into());
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--certs"])
            .arg(certs)
            .args(["--cache-mib", &cache_mib.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting `coalition serve`")?;
        match listening(&mut child, "listening on ") {
            Ok((addr, stdout)) => Ok(Hub {
                addr,
                child,
                _stdout: stdout,
            }),
            Err(e) => {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                bail!("the hub {e}: {log}")
            }
        }
    }

    pub fn memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("reading the hub's /proc status")?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc status"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }

    /// CPU time the hub has used so far (user + system), from `/proc/<pid>/stat`.
    pub fn cpu(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .context("reading the hub's /proc stat")?;
        // Fields after the command name (which may hold spaces) end at its closing ')'.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow!("malformed /proc stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("no field {i} in /proc stat"))
        };
        // Clock ticks are 100 per second on Linux.
        Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
    }

    /// Waits until the hub's resident memory stops changing (its start-up work, such as
    /// loading the matching index, is done); returns the memory then.
    pub async fn settle(&self) -> Result<Memory> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = self.memory()?;
        let mut stable = 0;
        while stable < 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.memory()?;
            if now.rss_kib.abs_diff(last.rss_kib) < 256 {
                stable += 1;
            } else {
                stable = 0;
            }
            last = now;
        }
        Ok(last)
    }

    /// Resets the hub's VmHWM to its current VmRSS (`/proc/<pid>/clear_refs`, value 5).
    pub fn reset_peak(&self) -> Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .context("resetting the hub's peak RSS")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the hub to exit (after a signal sent by the caller).
    pub fn wait(mut self) -> Result<()> {
        self.child.wait()?;
        Ok(())
    }

    /// Stops the hub (SIGKILL is safe: every acknowledged write is already durable) and waits
    /// for it, so its sled lock is released.
    pub fn stop(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Hub {
    /// Never leaves a hub running if the bench fails part-way.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Submits `bodies` to `hub` one at a time as `member` (its TLS identity and signing key from
/// `certs`), then has the hub publish a checkpoint of everything: returns the connection, the
/// log size that checkpoint covers, and the seconds the submissions took.
pub async fn load(
    hub: &Hub,
    certs: &coalition_hub::pki::CertDir,
    member: &coalition_hub::membership::MemberId,
    bodies: impl Iterator<Item = coalition_hub::statement::Body>,
) -> Result<(coalition_hub::client::Client, u64, f64)> {
    use coalition_hub::client::{Client, sign_new};
    let key = certs.signing_key(member)?;
    let mut client = Client::connect(&hub.addr, &certs.member_tls(member)?).await?;
    let started = Instant::now();
    for body in bodies {
        client.submit(sign_new(member, &key, body)).await?;
    }
    let took = started.elapsed().as_secs_f64();
    let size = client
        .audit
        .get_checkpoint(coalition_hub::pb::GetCheckpointRequest {
            tree_size: None,
            refresh: true,
        })
        .await?
        .into_inner()
        .tree_size;
    Ok((client, size, took))
}

/// A `coalition witness run` child process (C2SP tlog-witness) for one hub's log, on
/// 127.0.0.1:0, killed (and waited for) when dropped.
pub struct Witness {
    child: Child,
    /// Where it listens (`host:port`).
    pub addr: String,
    /// Its cosignature verifier key, as `coalition witness init` printed it.
    pub key: String,
    _stdout: BufReader<ChildStdout>,
}

impl Witness {
    /// `coalition witness init --data DATA --name NAME`, then `coalition witness run` for the
    /// log whose checkpoint verifier key is `log_key`.
    pub fn start(data: &Path, name: &str, log_key: &str) -> Result<Witness> {
        let binary = env!("CARGO_BIN_EXE_coalition");
        let init = Command::new(binary)
            .args(["witness", "init", "--name", name, "--data"])
            .arg(data)
            .output()
            .context("coalition witness init")?;
        let printed = String::from_utf8_lossy(&init.stdout);
        let key = printed
            .lines()
            .find_map(|l| l.strip_prefix("witness key: "))
            .ok_or_else(|| anyhow!("no witness key in {printed:?}"))?
            .to_owned();
        let mut child = Command::new(binary)
            .args([
                "witness",
                "run",
                "--listen",
                "127.0.0.1:0",
                "--log",
                log_key,
                "--data",
            ])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `coalition witness run`")?;
        let (addr, stdout) = listening(&mut child, "witness listening on ")
            .map_err(|e| anyhow!("the witness {e}"))?;
        Ok(Witness {
            addr,
            key,
            child,
            _stdout: stdout,
        })
    }

    /// The witness policy naming only this witness, as its quorum.
    pub fn sole_policy(&self) -> Result<coalition_hub::witness::policy::WitnessPolicy> {
        let name = self.key.split('+').next().unwrap_or_default();
        let text = format!("witness {} http://{}\nquorum {name}\n", self.key, self.addr);
        Ok(coalition_hub::witness::policy::WitnessPolicy::parse(&text)?)
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `child`'s stdout up to its line `<prefix><address>`: the address, and the stdout
/// (kept open so the child never writes to a closed pipe). The child is killed and reaped if
/// it exits first.
fn listening(child: &mut Child, prefix: &str) -> Result<(String, BufReader<ChildStdout>)> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("has no stdout"))?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line)? == 0 {
            let _ = child.kill();
            let _ = child.wait();
            bail!("exited before listening");
        }
        if let Some(addr) = line.trim().strip_prefix(prefix) {
            return Ok((addr.to_owned(), stdout));
        }
    }
}
