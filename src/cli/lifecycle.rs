//! `coalition retract` (a member withdraws its own statement or entries of it) and
//! `coalition show` (a statement, its entries' states and the retractions that name it, as the
//! member's own verified sync state decides them). The admin-quorum path is
//! `coalition admin retract`.

use super::Connection;
use crate::client::sign_new;
use crate::lifecycle::{Lifecycle, Retraction, Target, entry_count};
use crate::membership::format_ms;
use crate::pb;
use crate::pki::{CertDir, load_signing_key};
use crate::replica::Replica;
use crate::statement::{Body, ParsedEnvelope, Reader, StatementId};
use crate::sync::Cursor;
use crate::text::escape_control as esc;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;

/// What to retract, shared by `coalition retract` and `coalition admin retract`.
#[derive(Debug, Args)]
pub struct RetractionArgs {
    /// The statement id (64 hex) to retract.
    #[arg(value_name = "STATEMENT_ID")]
    statement_id: String,
    /// Retract only this entry (0-based index of a hash set's entries or a risk signal's
    /// indicators); repeat for several. Default: the whole statement.
    #[arg(long = "entry", value_name = "N")]
    entries: Vec<u32>,
    /// Why, for every member who holds a copy (1..=1000 characters).
    #[arg(long)]
    reason: String,
}

impl RetractionArgs {
    /// The retraction, checked as the hub checks it.
    pub fn retraction(&self, admin_quorum: bool) -> Result<Retraction> {
        let target = StatementId::from_hex(&self.statement_id).with_context(|| {
            format!("'{}' is not a 64-hex statement id", esc(&self.statement_id))
        })?;
        let mut entries = self.entries.clone();
        entries.sort_unstable();
        entries.dedup();
        let wire = Retraction {
            target,
            entries,
            reason: self.reason.clone(),
            admin_quorum,
        }
        .to_wire();
        Ok(Retraction::from_wire(wire)?)
    }
}

#[derive(Debug, Args)]
pub struct RetractArgs {
    #[command(flatten)]
    what: RetractionArgs,
    /// Signing key (PKCS#8 PEM); default <certs>/members/<id>.sign.key.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    #[command(flatten)]
    conn: Connection,
}

/// `coalition retract`.
pub async fn retract(args: RetractArgs) -> Result<()> {
    let id = args.conn.member_id()?;
    let key = match &args.signing_key {
        Some(path) => load_signing_key(path)?,
        None => CertDir::new(&args.conn.certs).signing_key(&id)?,
    };
    let retraction = args.what.retraction(false)?;
    let what = retraction.describe();
    let envelope = sign_new(&id, &key, Body::Retraction(retraction));
    let response = args.conn.connect().await?.submit(envelope).await?;
    let receipt = response.receipt.unwrap_or_default();
    println!(
        "{} at log entry {} (statement {}): {}",
        if response.already_present {
            "already logged"
        } else {
            "logged"
        },
        receipt.seq,
        hex::encode(&receipt.statement_id),
        esc(&what)
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The statement id (64 hex).
    #[arg(value_name = "STATEMENT_ID")]
    statement_id: String,
    /// The output of your `coalition sync`: its cursor (<out>.cursor) holds the replica whose
    /// retractions decide the states shown.
    #[arg(long, value_name = "OUT")]
    synced: PathBuf,
    #[command(flatten)]
    conn: Connection,
}

/// `coalition show`: one line per fact.
pub async fn show(args: ShowArgs) -> Result<()> {
    let id = StatementId::from_hex(&args.statement_id)
        .with_context(|| format!("'{}' is not a 64-hex statement id", esc(&args.statement_id)))?;
    let mut cursor_path = args.synced.clone().into_os_string();
    cursor_path.push(".cursor");
    let cursor_path = PathBuf::from(cursor_path);
    let Some(cursor) = Cursor::load(&cursor_path)? else {
        bail!(
            "{} does not exist: run `coalition sync --out {}` first",
            cursor_path.display(),
            args.synced.display()
        );
    };
    let replica = Replica::restore(&cursor.replica, Default::default())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cursor_path.display()))?;
    let entry = args
        .conn
        .connect()
        .await?
        .hub
        .get_statement(pb::GetStatementRequest {
            statement_id: id.0.to_vec(),
        })
        .await
        .map_err(crate::client::ClientError::from)?
        .into_inner();
    let envelope = entry
        .envelope
        .context("the hub sent no envelope for this statement")?;
    let parsed = ParsedEnvelope::parse(envelope)?;
    if parsed.id != id {
        bail!(
            "the hub sent statement {} for {id}: it is not the statement asked for",
            parsed.id
        );
    }
    let me = Reader::Member(args.conn.member_id()?);
    let Some(statement) = parsed.statement else {
        if !parsed.header.readable_by(&me) {
            bail!(
                "statement {id} by '{}' is restricted to {}: only they, its issuer and auditors read its content",
                esc(parsed.header.issuer.as_str()),
                esc(&parsed.header.recipients.to_string())
            );
        }
        bail!(
            "the hub withheld the body of statement {id}, which its signed header shows you may read"
        );
    };
    println!(
        "statement {id}: {} shared by '{}' with key {}, logged at entry {} on {}",
        statement.kind().name(),
        esc(statement.issuer.as_str()),
        statement.key_id,
        entry.seq,
        format_ms(entry.received_at_ms)
    );
    if parsed.header.is_restricted() {
        println!(
            "restricted to: {} (and its issuer and auditors)",
            esc(&parsed.header.recipients.to_string())
        );
    }
    if entry.seq >= replica.size() {
        println!(
            "note: your sync state covers entries below {}; sync again to see this statement's state",
            replica.size()
        );
    }
    let registry = replica.registry();
    let target = Target {
        id,
        seq: entry.seq,
        issuer: &statement.issuer,
        kind: statement.kind(),
    };
    if registry.is_compromised(&statement.key_id, entry.received_at_ms) {
        println!(
            "state: compromised (key {} was declared compromised from before the hub received it): no entry matches",
            statement.key_id
        );
    }
    if let Some(at) = statement.body.expires_at_ms() {
        let now = crate::store::now_ms();
        println!(
            "expires at {}: {}",
            format_ms(at),
            if crate::lifecycle::expiry::expired(Some(at), now) {
                "expired, no entry matches"
            } else {
                "not yet"
            }
        );
    }
    match entry_count(&statement.body) {
        Some(count) => {
            let retracted = registry.retracted(&target);
            let gone = (0..count)
                .filter(|i| !retracted.state(*i).matches())
                .count();
            println!(
                "entries: {count}, {} active, {gone} retracted",
                count as usize - gone
            );
            for i in (0..count).filter(|i| !retracted.state(*i).matches()) {
                println!("entry {i}: {}", retracted.state(i).name());
            }
        }
        None => println!("a {} statement has no entries", statement.kind().name()),
    }
    let compromised = |k: &crate::membership::KeyId, at| registry.is_compromised(k, at);
    for record in registry.lifecycle().retractions_of(&id) {
        let r = &record.retraction;
        let effect = match Lifecycle::verdict(record, &target, &compromised) {
            Ok(()) => "applies".to_owned(),
            Err(why) => format!("no effect: {why}"),
        };
        println!(
            "retraction {} at entry {} by '{}'{}: {}; reason \"{}\"; {effect}",
            record.id,
            record.position.seq,
            esc(record.issuer.as_str()),
            if r.admin_quorum {
                " (admin quorum)"
            } else {
                ""
            },
            if r.entries.is_empty() {
                "the whole statement".to_owned()
            } else {
                format!(
                    "entries {}",
                    r.entries
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            },
            esc(&r.reason)
        );
    }
    Ok(())
}
