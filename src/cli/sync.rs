//! `coalition sync`: stream statements into a file, verifying each one locally, resumable
//! from a saved cursor with no gap and no duplicate.

use super::Connection;
use crate::formats::{EntryWriter, Format, RowFilter};
use crate::membership::MemberId;
use crate::pb;
use crate::statement::{Body, HashType, Kind, Label};
use crate::sync::{Cursor, Event, LogCheck, Session};
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::OpenOptions;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the output is flushed and the cursor saved while entries flow.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    conn: Connection,
    /// Output file (appended to when resuming).
    #[arg(long)]
    out: PathBuf,
    /// Output format (default: from the extension; .csv is CSV, otherwise JSON Lines).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Cursor file (default: <out>.cursor).
    #[arg(long)]
    cursor: Option<PathBuf>,
    /// Keep streaming new statements as they arrive.
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
    /// Skip the log check (proving what was received is in the hub's signed checkpoint and
    /// that the checkpoint extends the one saved last time).
    #[arg(long)]
    no_log_check: bool,
}

/// How often a following sync re-checks the log while caught up.
const LOG_CHECK_EVERY: Duration = Duration::from_secs(10);

pub async fn run(args: SyncArgs) -> Result<()> {
    let format = args.format.unwrap_or_else(|| Format::from_path(&args.out));
    let cursor_path = args.cursor.clone().unwrap_or_else(|| {
        let mut p = args.out.clone().into_os_string();
        p.push(".cursor");
        p.into()
    });
    let request = build_request(&args)?;
    let saved = Cursor::load(&cursor_path)?;
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(&args.out)
        .with_context(|| format!("opening {}", args.out.display()))?;
    let mut cursor = match saved {
        Some(c) => {
            let len = file.metadata()?.len();
            if len < c.output_bytes {
                bail!(
                    "{} is shorter ({len} bytes) than its cursor {} says ({} bytes); it was changed by something else: delete the cursor to sync from the start",
                    args.out.display(),
                    cursor_path.display(),
                    c.output_bytes
                );
            }
            // Drop any tail written after the last saved cursor: it will be received again.
            file.set_len(c.output_bytes)?;
            c
        }
        None => {
            file.set_len(0)?;
            Cursor::default()
        }
    };
    file.seek(SeekFrom::Start(cursor.output_bytes))?;
    let fresh = cursor.output_bytes == 0;
    let rows = RowFilter {
        hash_types: args
            .hash_types
            .iter()
            .map(|t| t.parse::<HashType>().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?,
        labels: args
            .labels
            .iter()
            .map(|l| Label::parse(l).map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?,
    };
    let mut writer = EntryWriter::new(BufWriter::new(file), format, fresh, rows)?;

    let client = args.conn.connect().await?;
    let start_seq = cursor.next_seq;
    let contiguous = request.kinds.is_empty()
        && request.hash_types.is_empty()
        && request.labels.is_empty()
        && request.issuers.is_empty();
    let mut log_check = if args.no_log_check {
        None
    } else {
        Some((
            LogCheck::new(cursor.log.clone(), start_seq, contiguous),
            args.conn.connect().await?,
        ))
    };
    let mut last_check = Instant::now();
    let mut checked = None;
    let mut session = Session::start(
        client,
        pb::SyncRequest {
            from_seq: start_seq,
            ..request
        },
    )
    .await?;
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let (mut statements, mut hashes, mut signals, mut membership) = (0u64, 0u64, 0u64, 0u64);
    let mut log_size = start_seq;
    let mut last_save = Instant::now();
    let mut dirty = false;
    while let Some(event) = session.next().await? {
        match event {
            Event::Entry(entry) => {
                statements += 1;
                match &entry.statement.body {
                    Body::HashSet(set) => hashes += set.entries.len() as u64,
                    Body::RiskSignal(_) => signals += 1,
                    Body::Genesis(_) | Body::Membership(_) => membership += 1,
                }
                writer.write(&entry)?;
                if let Some((check, _)) = &mut log_check {
                    check.received(&entry);
                }
                dirty = true;
                if last_save.elapsed() >= CHECKPOINT_EVERY {
                    save(&mut writer, &mut cursor, session.next_seq(), &cursor_path)?;
                    last_save = Instant::now();
                    dirty = false;
                }
                bar.set_message(format!(
                    "{statements} statements, {hashes} hashes, {signals} signals verified (seq {})",
                    entry.seq
                ));
                bar.tick();
            }
            Event::Progress {
                next_seq,
                log_size: size,
            } => {
                log_size = size;
                if dirty || next_seq != cursor.next_seq {
                    save(&mut writer, &mut cursor, next_seq, &cursor_path)?;
                    last_save = Instant::now();
                    dirty = false;
                }
                if args.follow && last_check.elapsed() >= LOG_CHECK_EVERY {
                    if let Some((check, client)) = &mut log_check {
                        checked = Some(check.verify(client).await?);
                        cursor.log = check.view().cloned();
                        save(&mut writer, &mut cursor, next_seq, &cursor_path)?;
                    }
                    last_check = Instant::now();
                }
                if args.follow {
                    bar.set_message(format!(
                        "{statements} statements, {hashes} hashes, {signals} signals verified; caught up at {next_seq}, following"
                    ));
                }
            }
        }
    }
    save(&mut writer, &mut cursor, session.next_seq(), &cursor_path)?;
    if let Some((check, client)) = &mut log_check {
        checked = Some(check.verify(client).await?);
        cursor.log = check.view().cloned();
        cursor.save(&cursor_path)?;
    }
    bar.finish_and_clear();
    let checked = match checked {
        Some(r) => format!(
            "; log checked: {} received entries proven in the hub's signed checkpoint of {} entries{}",
            r.entries_proven,
            r.checkpoint_size,
            r.consistent_with
                .map(|p| format!(", which extends the checkpoint of {p} seen before"))
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    let skipped = if writer.skipped_signals > 0 {
        format!(
            " ({} risk signals not written: CSV holds hashes only, use --format jsonl)",
            writer.skipped_signals
        )
    } else {
        String::new()
    };
    println!(
        "synced {statements} statements ({hashes} hashes, {signals} risk signals, {membership} membership) from seq {start_seq} to {}, all signatures verified; log size {log_size}; wrote {} rows to {}{skipped}; cursor {}{checked}",
        cursor.next_seq,
        writer.rows,
        args.out.display(),
        cursor_path.display()
    );
    Ok(())
}

fn save(
    writer: &mut EntryWriter<BufWriter<std::fs::File>>,
    cursor: &mut Cursor,
    next_seq: u64,
    path: &std::path::Path,
) -> Result<()> {
    let out = writer.get_mut();
    out.flush()?;
    let file = out.get_mut();
    file.sync_data()?;
    cursor.output_bytes = file.stream_position()?;
    cursor.next_seq = next_seq;
    cursor.save(path)?;
    Ok(())
}

fn build_request(args: &SyncArgs) -> Result<pb::SyncRequest> {
    let kinds = args
        .kinds
        .iter()
        .map(|k| match Kind::parse(k) {
            Some(kind) => Ok(kind.to_wire() as i32),
            None => bail!("unknown --kind '{k}' (hash_set, risk_signal)"),
        })
        .collect::<Result<Vec<_>>>()?;
    let hash_types = args
        .hash_types
        .iter()
        .map(|t| {
            t.parse::<HashType>()
                .map(|t| t.to_wire() as i32)
                .map_err(anyhow::Error::msg)
        })
        .collect::<Result<Vec<_>>>()?;
    for l in &args.labels {
        Label::parse(l).map_err(anyhow::Error::msg)?;
    }
    for i in &args.issuers {
        MemberId::parse(i)?;
    }
    Ok(pb::SyncRequest {
        from_seq: 0,
        kinds,
        hash_types,
        labels: args.labels.clone(),
        issuers: args.issuers.clone(),
        follow: args.follow,
    })
}
