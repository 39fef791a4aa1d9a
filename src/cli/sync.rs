//! `coalition sync`: stream statements into a file, verifying each one locally, resumable
//! from a saved cursor with no gap and no duplicate.

use super::Connection;
use crate::formats::{EntryWriter, Format, RowFilter, sync_events, sync_snapshot};
use crate::lifecycle::EntryState;
use crate::membership::format_ms;
use crate::replica::{Accepted, Content};
use crate::statement::Body;
use crate::sync::{FilterSpec, StateChange, SyncOptions, Syncer};
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::OpenOptions;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    conn: Connection,
    /// Output file (appended to when resuming). Beside it: <out>.cursor and <out>.ids, the
    /// member's replica state.
    #[arg(long)]
    out: PathBuf,
    /// Output format (default: from the extension; .csv is CSV, otherwise JSON Lines).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Cursor file (default: <out>.cursor).
    #[arg(long)]
    cursor: Option<PathBuf>,
    /// Keep streaming new statements as they arrive (each batch written once proven).
    #[arg(long)]
    follow: bool,
    /// Only these statement kinds: hash_set, risk_signal.
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Only statements carrying these hash types.
    #[arg(long = "hash-type")]
    hash_types: Vec<String>,
    /// Only statements carrying hashes with these labels.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Only statements by these members.
    #[arg(long = "issuer")]
    issuers: Vec<String>,
    /// The genesis statement id (hex) of the coalition you trust; without it the first sync
    /// pins the genesis it receives (trust on first use) and prints it.
    #[arg(long, value_name = "HEX")]
    genesis: Option<String>,
    /// Also keep FILE (same format as --out) holding exactly the rows that should match now:
    /// the output without retracted entries, rewritten atomically when an entry's state
    /// changes and extended with every new batch.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// With --snapshot: the entry states it keeps, comma-separated (active, disputed,
    /// quarantined, retracted, compromised, expired). Default: active,disputed (what matches).
    /// With any other list each row names its state (a `state` field or column).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "STATES",
        requires = "snapshot"
    )]
    states: Vec<String>,
    /// Refuse every batch whose proving checkpoint is not witnessed under the coalition's
    /// witness policy (nothing of it is written; exit 1). Without it a sync goes on and says
    /// "not witnessed since ..." on every run while the policy is not met.
    #[arg(long)]
    require_witnessed: bool,
}

pub async fn run(args: SyncArgs) -> Result<()> {
    let format = args.format.unwrap_or_else(|| Format::from_path(&args.out));
    let beside = |suffix: &str| {
        let mut p = args.out.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    let cursor_path = args.cursor.clone().unwrap_or_else(|| beside(".cursor"));
    let states = snapshot_states(&args.states)?;
    let ids_path = beside(".ids");
    let events_path = beside(".events");
    let genesis = args
        .genesis
        .as_deref()
        .map(super::parse_genesis)
        .transpose()?;
    let spec = FilterSpec {
        kinds: args.kinds.clone(),
        hash_types: args.hash_types.clone(),
        labels: args.labels.clone(),
        issuers: args.issuers.clone(),
    };
    let filter = spec.parse().map_err(anyhow::Error::msg)?;
    let rows = RowFilter {
        hash_types: filter.hash_types.clone(),
        labels: filter.labels.clone(),
    };
    let me = args.conn.member_id()?;
    let client = args.conn.connect().await?;
    let (mut syncer, output_bytes) = Syncer::open(
        client,
        SyncOptions {
            filter: spec,
            follow: args.follow,
            genesis,
            cursor: cursor_path.clone(),
            ids: ids_path.clone(),
            require_witnessed: args.require_witnessed,
        },
    )
    .await?;
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(&args.out)
        .with_context(|| format!("opening {}", args.out.display()))?;
    let len = file.metadata()?.len();
    if len < output_bytes {
        bail!(
            "{} is shorter ({len} bytes) than its cursor {} says ({output_bytes} bytes); it was changed by something else: delete it and the cursor to sync from the start",
            args.out.display(),
            cursor_path.display(),
        );
    }
    // Drop any tail written after the last saved cursor: it is received and proven again.
    file.set_len(output_bytes)?;
    file.seek(SeekFrom::Start(output_bytes))?;
    let mut writer = EntryWriter::new(BufWriter::new(file), format, output_bytes == 0, rows)?;
    // The events file, cut back to what the cursor covers like the output.
    let mut events = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(&events_path)
        .with_context(|| format!("opening {}", events_path.display()))?;
    let events_len = events.metadata()?.len().min(syncer.saved_events_bytes());
    events.set_len(events_len)?;
    events.seek(SeekFrom::Start(events_len))?;
    let mut events = BufWriter::new(events);
    // The snapshot is derived from the output: rebuilt whole at start (so expiry is applied at
    // every sync), then whenever an entry's state changes or the earliest expiry it holds
    // passes. Signing keys of entries compromised later come from the ids file.
    let ids_reader = std::fs::File::open(&ids_path)
        .with_context(|| format!("opening {}", ids_path.display()))?;
    let signing_key = |seq| crate::sync::recorded_signing_key(&ids_reader, seq);
    let mut snapshot_covers = output_bytes;
    let mut next_expiry = None;
    if let Some(snapshot) = &args.snapshot {
        writer.get_mut().flush()?;
        let pass = sync_snapshot::rewrite(
            &args.out,
            format,
            &rules(syncer.replica().registry(), &signing_key, &states),
            snapshot,
        )
        .with_context(|| format!("writing the snapshot {}", snapshot.display()))?;
        next_expiry = pass.next_expiry;
    }
    let mut retractions = Retractions::default();
    let mut yours = Yours::default();
    let mut my_keys = KeyStates::of(syncer.replica().registry(), &me);
    let start_seq = syncer.replica().size();
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut counts = Counts::default();
    let mut checkpoint_size = syncer.replica().checkpoint().map_or(0, |(size, _)| size);
    // Following: the witness check runs after a batch at most once per WITNESS_CHECK_EVERY.
    let mut witness_checked = tokio::time::Instant::now();
    while let Some(proven) = syncer.next().await? {
        let mut written = Vec::with_capacity(proven.entries.len());
        for entry in proven.entries {
            counts.add(&entry);
            let row = syncer.row(entry);
            if let Some(row) = &row {
                let before = writer.rows;
                writer.write(row)?;
                sync_events::added(&mut events, row, writer.rows - before)?;
            }
            written.push(row.is_some());
        }
        for change in &proven.changes {
            sync_events::changed(&mut events, change)?;
        }
        retractions.add(&proven.changes, proven.ignored_retractions);
        yours.add(&proven.changes, &me);
        let keys_now = KeyStates::of(syncer.replica().registry(), &me);
        yours.keys.extend(my_keys.changes_to(&keys_now));
        my_keys = keys_now;
        let out = writer.get_mut();
        out.flush()?;
        let file = out.get_mut();
        file.sync_data()?;
        let output_bytes = file.stream_position()?;
        events.flush()?;
        events.get_mut().sync_data()?;
        syncer.set_events_bytes(events.get_mut().stream_position()?);
        syncer.commit(&written, output_bytes)?;
        if let Some(snapshot) = &args.snapshot {
            let rules = rules(syncer.replica().registry(), &signing_key, &states);
            let due = next_expiry.is_some_and(|t| rules.now_ms >= t);
            if proven.changes.is_empty() && proven.suspects.is_empty() && !due {
                let pass =
                    sync_snapshot::extend(&args.out, snapshot_covers, format, &rules, snapshot)
                        .with_context(|| format!("writing the snapshot {}", snapshot.display()))?;
                next_expiry = match (next_expiry, pass.next_expiry) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            } else {
                let pass = sync_snapshot::rewrite(&args.out, format, &rules, snapshot)
                    .with_context(|| format!("writing the snapshot {}", snapshot.display()))?;
                next_expiry = pass.next_expiry;
            }
            snapshot_covers = output_bytes;
        }
        checkpoint_size = proven.checkpoint_size;
        for s in &proven.suspects {
            eprintln!(
                "warning: key {} of '{}' was revoked as compromised since {}: {} entries already written are now suspect (seq {})",
                s.key_id,
                s.member,
                format_ms(s.since_ms),
                s.seqs.len(),
                list(&s.seqs)
            );
        }
        if args.follow && witness_checked.elapsed() >= WITNESS_CHECK_EVERY {
            witness_checked = tokio::time::Instant::now();
            report_witnessing(&mut syncer).await?;
        }
        bar.set_message(format!(
            "{} statements, {} hashes, {} signals verified and proven (seq {}){}",
            counts.statements,
            counts.hashes,
            counts.signals,
            syncer.replica().size(),
            if args.follow { ", following" } else { "" }
        ));
        bar.tick();
    }
    bar.finish_and_clear();
    if let Some(g) = syncer.pinned_now() {
        eprintln!(
            "pinned genesis {g} on first use: compare it with your coalition's out of band, or pass --genesis next time"
        );
    }
    if let Some(v) = counts.newer_version {
        eprintln!(
            "warning: {} entries are of protocol version {v}, which this build cannot read: they were verified and proven but not written; upgrade coalition",
            counts.opaque
        );
    }
    let skipped = if writer.skipped_signals > 0 {
        format!(
            " ({} risk signals not written: CSV holds hashes only, use --format jsonl)",
            writer.skipped_signals
        )
    } else {
        String::new()
    };
    if retractions.any() || counts.retractions > 0 {
        eprintln!(
            "retractions: {} received, {} entries or statements retracted, {} restored (a compromise voided the retraction), {} retractions changed nothing held here; events in {}{}",
            counts.retractions,
            retractions.retracted,
            retractions.restored,
            retractions.ignored,
            events_path.display(),
            args.snapshot
                .as_ref()
                .map(|s| format!("; {} holds what should match", s.display()))
                .unwrap_or_default()
        );
    }
    if let Some(line) = yours.line() {
        eprintln!("{line}");
    }
    report_witnessing(&mut syncer).await?;
    if !yours.keys.is_empty() {
        eprintln!("your keys: {}", yours.keys.join("; "));
    }
    println!(
        "synced {} statements ({} hashes, {} risk signals, {} membership, {} outside the filter) from seq {start_seq} to {}, all signatures and entitlements verified; every entry proven in the hub's signed checkpoint of {checkpoint_size} entries; wrote {} rows to {}{skipped}; cursor {}",
        counts.statements,
        counts.hashes,
        counts.signals,
        counts.membership,
        counts.withheld,
        syncer.replica().size(),
        writer.rows,
        args.out.display(),
        cursor_path.display()
    );
    Ok(())
}

/// How often a following sync checks that its checkpoints are witnessed.
const WITNESS_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks the latest proven checkpoint against the coalition's witness policy and says what
/// it found on stderr (nothing without a policy).
async fn report_witnessing(syncer: &mut Syncer) -> Result<()> {
    if let Some(report) = syncer.witnessing(crate::sync::WITNESS_WAIT).await? {
        if report.witnessed.met && report.witnessed.forged.is_empty() {
            eprintln!("{}", report.line());
        } else {
            eprintln!("warning: {}", report.line());
        }
    }
    Ok(())
}

/// The lifecycle changes of a run, for its summary.
#[derive(Default)]
struct Retractions {
    retracted: u64,
    restored: u64,
    ignored: u64,
}

impl Retractions {
    fn add(&mut self, changes: &[StateChange], ignored: u64) {
        let retractions = changes
            .iter()
            .filter(|c| matches!(c.cause, crate::sync::Cause::Retraction(_)));
        for c in retractions {
            if c.to.matches() {
                self.restored += 1;
            } else {
                self.retracted += 1;
            }
        }
        self.ignored += ignored;
    }

    fn any(&self) -> bool {
        self.retracted + self.restored + self.ignored > 0
    }
}

/// State changes of the syncing member's own entries, for its report line: the entries
/// disputed or quarantined by others, retracted by an admin quorum, or back to active; and
/// the changes to its own keys the membership replayed in this run.
#[derive(Default)]
struct Yours {
    /// By new state name: (changes, entries).
    to: std::collections::BTreeMap<&'static str, u64>,
    /// One phrase per key change (`key K added`, `key K revoked as compromised since T`).
    keys: Vec<String>,
}

/// The syncing member's keys as the replayed membership holds them: status and compromise
/// time by key id.
struct KeyStates(
    std::collections::BTreeMap<
        crate::membership::KeyId,
        (crate::membership::KeyStatus, Option<i64>),
    >,
);

impl KeyStates {
    fn of(registry: &crate::membership::Registry, me: &crate::membership::MemberId) -> Self {
        KeyStates(
            registry
                .member(me)
                .map(|m| {
                    m.keys
                        .iter()
                        .map(|k| (k.key_id.clone(), (k.status, k.compromised_at_ms)))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// What changed from `self` to `now`, one phrase per key.
    fn changes_to(&self, now: &KeyStates) -> Vec<String> {
        use crate::membership::KeyStatus;
        now.0
            .iter()
            .filter(|(id, state)| self.0.get(*id) != Some(*state))
            .map(
                |(id, (status, since))| match (self.0.get(id), status, since) {
                    (None, KeyStatus::Active, _) => format!("key {id} added"),
                    (_, KeyStatus::Compromised, Some(at)) => {
                        format!("key {id} revoked as compromised since {}", format_ms(*at))
                    }
                    (_, KeyStatus::Retired, _) => format!("key {id} retired"),
                    (_, status, _) => format!("key {id} now {status:?}"),
                },
            )
            .collect()
    }
}

impl Yours {
    fn add(&mut self, changes: &[StateChange], me: &crate::membership::MemberId) {
        for c in changes.iter().filter(|c| &c.issuer == me) {
            let by_admins =
                matches!(&c.cause, crate::sync::Cause::Retraction(r) if r.retraction.admin_quorum);
            let name = match c.to {
                crate::lifecycle::EntryState::Erased => "erased by admin quorum",
                crate::lifecycle::EntryState::Retracted if by_admins => "retracted by admin quorum",
                crate::lifecycle::EntryState::Retracted => continue,
                to => to.name(),
            };
            *self.to.entry(name).or_default() += c.entries.as_ref().map_or(1, |e| e.len() as u64);
        }
    }

    fn line(&self) -> Option<String> {
        (!self.to.is_empty()).then(|| {
            format!(
                "your entries: {} (see the events file; `coalition show ID` explains each)",
                self.to
                    .iter()
                    .map(|(state, n)| format!("{n} {state}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// What a sync received, for its summary line.
#[derive(Default)]
struct Counts {
    statements: u64,
    hashes: u64,
    signals: u64,
    membership: u64,
    retractions: u64,
    opinions: u64,
    withheld: u64,
    opaque: u64,
    newer_version: Option<u32>,
}

impl Counts {
    fn add(&mut self, entry: &Accepted) {
        self.statements += 1;
        match &entry.content {
            Content::Statement(s) => match &s.body {
                Body::HashSet(set) => self.hashes += set.entries.len() as u64,
                Body::RiskSignal(_) => self.signals += 1,
                Body::Genesis(_) | Body::Membership(_) | Body::Settings(_) => self.membership += 1,
                Body::Retraction(_) => self.retractions += 1,
                Body::Opinion(_) => self.opinions += 1,
            },
            Content::Withheld => self.withheld += 1,
            Content::Opaque { version } => {
                self.opaque += 1;
                self.newer_version = Some(self.newer_version.map_or(*version, |v| v.max(*version)));
            }
        }
    }
}

/// At most 20 sequence numbers, then how many more.
fn list(seqs: &[u64]) -> String {
    let shown: Vec<String> = seqs.iter().take(20).map(u64::to_string).collect();
    match seqs.len() {
        0 => "none".into(),
        n if n > 20 => format!("{} and {} more", shown.join(", "), n - 20),
        _ => shown.join(", "),
    }
}

/// The states `--states` asks the snapshot to keep (default: those that match); erased is
/// refused, as its body is gone.
fn snapshot_states(names: &[String]) -> Result<Vec<EntryState>> {
    let states = EntryState::parse_list(names).map_err(|e| anyhow::anyhow!("--states: {e}"))?;
    if states.contains(&EntryState::Erased) {
        bail!("--states: erased entries cannot be kept in a snapshot: their bodies are gone");
    }
    Ok(if states.is_empty() {
        EntryState::MATCHING.to_vec()
    } else {
        states
    })
}

/// What decides the snapshot's rows now: `registry` (the replica's), the clock, the signing
/// keys the member recorded, and the states asked for.
fn rules<'a>(
    registry: &'a crate::membership::Registry,
    signing_key: &'a dyn Fn(u64) -> Option<crate::membership::KeyId>,
    states: &'a [EntryState],
) -> sync_snapshot::Rules<'a> {
    sync_snapshot::Rules {
        registry,
        now_ms: crate::store::now_ms(),
        signing_key,
        states,
    }
}
