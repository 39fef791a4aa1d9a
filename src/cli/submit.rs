//! `coalition submit`: sign a hash list (split into sets) or a risk signal and submit it through
//! a journal, so that a rerun after a failure resends the same envelopes and logs nothing twice
//! (the rules are in [`crate::journal`]).

use super::Connection;
use crate::client::{Client, sign_new_for};
use crate::formats::{self, SignalFile};
use crate::journal::{InputKind, Journal, Receipt, Submission};
use crate::log::LeafIndex;
use crate::membership::{KeyId, MemberId};
use crate::pb;
use crate::pki::{CertDir, load_signing_key};
use crate::statement::{
    Body, HashEntry, HashSet, MAX_HASH_SET_ENTRIES, Recipients, RiskSignal, StatementId,
};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    conn: Connection,
    /// Hash list to submit: CSV rows type,hash[,labels[,quality]], JSON Lines, or bare PDQ
    /// hex lines (detected line by line; see docs/PROTOCOL.md).
    #[arg(long, conflicts_with = "signal", required_unless_present = "signal")]
    hashes: Option<PathBuf>,
    /// Hashes per signed set.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=MAX_HASH_SET_ENTRIES as u64))]
    set_size: u64,
    /// Description carried by each set.
    #[arg(long, default_value = "")]
    description: String,
    /// When the sets' entries stop matching: RFC 3339 (2027-01-31T00:00:00Z) or milliseconds
    /// since the epoch; must be in the future. Default: never.
    #[arg(long, value_name = "TIME", value_parser = crate::membership::parse_time_ms)]
    expires_at: Option<i64>,
    /// Risk signal to submit (JSON, see docs/PROTOCOL.md).
    #[arg(long)]
    signal: Option<PathBuf>,
    /// Signing key (PKCS#8 PEM); default <certs>/members/<id>.sign.key.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// The submission's journal: every statement signed and every receipt, so that rerunning
    /// the same command resends the same statements (nothing is logged twice) and, once all
    /// are acknowledged, submits nothing. Default: <input>.journal.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Sign and submit anew even if the journal holds this submission (or is damaged); the
    /// journal is replaced. Statements it recorded are logged a second time.
    #[arg(long)]
    new_submission: bool,
    /// Restrict every statement to this member (repeatable): only the members named, you and
    /// auditors receive the content; everyone else sees only that you shared something with
    /// them, and when (docs/PROTOCOL.md §2.7). A member of a hub this coalition federates
    /// with is named `MEMBER@HUB_NAME`: the body goes to that hub only, directly from this one
    /// (§3.10). At most 64.
    #[arg(long = "recipient", value_name = "MEMBER[@HUB_NAME]")]
    recipients: Vec<String>,
}

pub async fn run(args: SubmitArgs) -> Result<()> {
    let id = args.conn.member_id()?;
    let key = match &args.signing_key {
        Some(path) => load_signing_key(path)?,
        None => CertDir::new(&args.conn.certs).signing_key(&id)?,
    };
    let (input, kind) = match (&args.hashes, &args.signal) {
        (Some(path), _) => (
            path,
            InputKind::HashList {
                set_size: args.set_size,
                description: &args.description,
                expires_at_ms: args.expires_at,
            },
        ),
        (None, Some(path)) => (path, InputKind::RiskSignal),
        (None, None) => bail!("give --hashes FILE or --signal FILE"),
    };
    let recipients = args
        .recipients
        .iter()
        .map(|r| MemberId::parse_qualified(r).with_context(|| format!("--recipient '{r}'")))
        .collect::<Result<Vec<_>>>()?;
    let recipients = Recipients::from_members(recipients, &id).context("--recipient")?;
    let submission = Submission::new(input, kind, &id, &KeyId::of(&key.verifying_key()))?
        .restricted_to(&recipients);
    let path = args
        .journal
        .clone()
        .unwrap_or_else(|| Journal::path_for(input));
    let found = if args.new_submission {
        None
    } else {
        Journal::open(&path)?
    };
    let (mut journal, what) = match found {
        Some(journal) if journal.digest() == submission.digest => {
            if journal.is_complete() {
                print_completed(&journal);
                return Ok(());
            }
            (journal, None)
        }
        other => {
            // Read before anything is moved: a bad input changes nothing.
            let parsed = match kind {
                InputKind::HashList { .. } => {
                    let entries = formats::read_hashes(input)?;
                    if entries.is_empty() {
                        bail!("{} holds no hashes", input.display());
                    }
                    Parsed::Hashes(entries)
                }
                InputKind::RiskSignal => Parsed::Signal(SignalFile::read(input)?),
            };
            if let Some(old) = other.filter(|j| !j.is_complete()) {
                let (acked, total) = (old.acknowledged(), old.statements());
                let kept = old.set_aside()?;
                eprintln!(
                    "note: {} held an unfinished submission of other inputs ({acked} of {total} statements acknowledged); kept it as {}: to finish that one, rerun with its inputs and --journal {1}",
                    path.display(),
                    kept.display()
                );
            }
            // Signed one set at a time, each written to the journal before the next is made.
            let (journal, what) = match parsed {
                Parsed::Hashes(entries) => {
                    let sets = entries.chunks(args.set_size as usize).map(|chunk| {
                        let body = Body::HashSet(HashSet {
                            expires_at_ms: args.expires_at,
                            description: args.description.clone(),
                            entries: chunk.to_vec(),
                        });
                        sign_new_for(&id, &key, body, &recipients)
                    });
                    let journal = Journal::create(&path, &submission, sets)?;
                    (journal, format!("{} hashes", entries.len()))
                }
                Parsed::Signal(signal) => {
                    let envelope = sign_new_for(&id, &key, Body::RiskSignal(signal), &recipients);
                    let journal = Journal::create(&path, &submission, [envelope])?;
                    (journal, "a risk signal".to_string())
                }
            };
            (journal, Some(what))
        }
    };

    let before = journal.acknowledged();
    let mut present = 0;
    if let Err(e) = submit_pending(&args.conn, &mut journal, &mut present).await {
        return Err(e.context(format!(
            "submission interrupted with {} of {} statements acknowledged (recorded in {}); rerun the same command to submit the rest",
            journal.acknowledged(),
            journal.statements(),
            journal.path().display()
        )));
    }
    journal.complete()?;
    let now = journal.statements() - before;
    let last = match journal.receipts().last() {
        Some((_, r)) => format!("last: seq {}, statement {}", r.seq, r.id),
        None => "no statement".to_string(),
    };
    match what {
        Some(what) => println!(
            "submitted {now} statement(s) ({what}), {present} already present; {last}; journal {}",
            journal.path().display()
        ),
        None => {
            let held = match present {
                0 => String::new(),
                n => format!(" ({n} of them the hub already held: acknowledgements lost earlier)"),
            };
            println!(
                "resumed the submission journaled in {}: {before} already acknowledged, {now} submitted now{held}; {last}",
                journal.path().display()
            )
        }
    }
    Ok(())
}

/// Submits the journal's statements not yet acknowledged, recording each receipt as it comes;
/// counts those the hub already held in `present`.
async fn submit_pending(conn: &Connection, journal: &mut Journal, present: &mut u64) -> Result<()> {
    let pending = journal.statements() - journal.acknowledged();
    if pending == 0 {
        return Ok(());
    }
    let mut client: Client = conn.connect().await?;
    let bar = ProgressBar::new(pending as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} statements {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for item in journal.pending()? {
        let (index, envelope) = item?;
        let response: pb::SubmitResponse = client
            .submit(envelope)
            .await
            .with_context(|| format!("submitting statement {index}"))?;
        let receipt = response
            .receipt
            .ok_or_else(|| anyhow!("the hub's reply to statement {index} carries no receipt"))?;
        let statement = StatementId::from_slice(&receipt.statement_id).ok_or_else(|| {
            anyhow!("the hub's receipt for statement {index} has no 32-byte statement id")
        })?;
        journal.acknowledge(
            index,
            Receipt {
                seq: LeafIndex(receipt.seq),
                id: statement,
                received_at_ms: receipt.received_at_ms,
                already_present: response.already_present,
            },
        )?;
        if response.already_present {
            *present += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The input file, read.
enum Parsed {
    Hashes(Vec<HashEntry>),
    Signal(RiskSignal),
}

/// A rerun of a completed submission: what was acknowledged, nothing submitted.
fn print_completed(journal: &Journal) {
    println!(
        "submission already completed (journal {}): {} statement(s) acknowledged; nothing submitted (--new-submission signs and submits them anew)",
        journal.path().display(),
        journal.statements()
    );
    for (index, r) in journal.receipts() {
        println!("statement {index}: seq {}, statement {}", r.seq, r.id);
    }
}
