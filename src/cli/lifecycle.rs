//! `coalition retract` (a member withdraws its own statement or entries of it),
//! `coalition opinion` (a member's opinion on another member's entry, `seen` restricted to the
//! entry's issuer by default) and `coalition show` (a
//! statement, its entries' states, the retractions and opinions that name it, as the member's
//! own verified sync state decides them). The admin-quorum paths are `coalition admin retract`,
//! `coalition admin quarantine` and `coalition admin release`.

use super::Connection;
use crate::client::{sign_new, sign_new_for};
use crate::lifecycle::{
    HashKey, Lifecycle, Opinion, Retraction, Target, Verdict, entry_count, entry_hash,
};
use crate::membership::format_ms;
use crate::pb;
use crate::pki::{CertDir, load_signing_key};
use crate::replica::Replica;
use crate::statement::{Body, ParsedEnvelope, Reader, Recipients, StatementId};
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
            erase: false,
        }
        .to_wire();
        Ok(Retraction::from_wire(wire)?)
    }
}

/// Which entry an opinion is on, shared by `coalition opinion` and `coalition admin
/// quarantine|release`.
#[derive(Debug, Args)]
pub struct EntryArgs {
    /// The statement id (64 hex) holding the entry.
    #[arg(value_name = "STATEMENT_ID")]
    statement_id: String,
    /// The entry (0-based index of a hash set's entries or a risk signal's indicators).
    #[arg(long, value_name = "N")]
    entry: u32,
    /// Why, for every member who holds a copy (0..=280 characters).
    #[arg(long, default_value = "")]
    note: String,
}

impl EntryArgs {
    /// The statement id.
    pub fn target(&self) -> Result<StatementId> {
        StatementId::from_hex(&self.statement_id)
            .with_context(|| format!("'{}' is not a 64-hex statement id", esc(&self.statement_id)))
    }

    /// The opinion, checked as the hub checks it, on the target fetched and verified: its
    /// entry's hash is copied from its body, unless its header is restricted (an opinion
    /// copies no hash of a restricted statement, docs/PROTOCOL.md §2.7). `None`: a restricted
    /// body this caller may not read (an admin quorum's verdict); the hub checks the entry.
    pub fn opinion(
        &self,
        verdict: Verdict,
        target: Option<&Body>,
        restricted: bool,
    ) -> Result<Opinion> {
        if let Some(body) = target {
            let count = entry_count(body).with_context(|| {
                format!(
                    "statement {} is a {} statement; only hash sets and risk signals have entries",
                    self.statement_id,
                    body.kind().name()
                )
            })?;
            if self.entry >= count {
                bail!(
                    "statement {} has {count} entries (0..{count}); entry {} does not exist",
                    self.statement_id,
                    self.entry
                );
            }
        }
        let wire = Opinion {
            target: self.target()?,
            entry: self.entry,
            verdict,
            note: self.note.clone(),
            hash: target
                .filter(|_| !restricted)
                .and_then(|body| entry_hash(body, self.entry)),
            admin_quorum: verdict.is_admin(),
        }
        .to_wire();
        Ok(Opinion::from_wire(wire)?)
    }
}

/// A member's verdict on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MemberVerdict {
    /// It is what its labels say.
    Confirmed,
    /// It is not abuse material (counts toward quarantine).
    FalsePositive,
    /// It is doubtful.
    Disputed,
    /// Withdraw my earlier opinion on this entry (with --seen: my `seen`).
    Withdraw,
    /// It matched on my platform. Restricted to the entry's issuer (and auditors) unless
    /// --public or --recipient says otherwise; never changes the entry's state.
    Seen,
}

impl From<MemberVerdict> for Verdict {
    fn from(v: MemberVerdict) -> Verdict {
        match v {
            MemberVerdict::Confirmed => Verdict::Confirmed,
            MemberVerdict::FalsePositive => Verdict::FalsePositive,
            MemberVerdict::Disputed => Verdict::Disputed,
            MemberVerdict::Withdraw => Verdict::Withdrawn,
            MemberVerdict::Seen => Verdict::Seen,
        }
    }
}

#[derive(Debug, Args)]
pub struct OpinionArgs {
    #[command(flatten)]
    on: EntryArgs,
    /// What you say about the entry.
    #[arg(value_enum)]
    verdict: MemberVerdict,
    /// With `seen`: share it with every member instead of only the entry's issuer (who holds
    /// what is itself sensitive: say so only if you mean it).
    #[arg(long, conflicts_with_all = ["recipients", "seen"])]
    public: bool,
    /// With `seen` or `withdraw --seen`: another member who may read it besides the entry's
    /// issuer (always a reader) and auditors; repeat for several.
    #[arg(long = "recipient", value_name = "MEMBER")]
    recipients: Vec<String>,
    /// With `withdraw`: withdraw my `seen` on the entry (restricted like a seen) rather than
    /// my confirmed, false-positive or disputed opinion.
    #[arg(long)]
    seen: bool,
    /// Signing key (PKCS#8 PEM); default <certs>/members/<id>.sign.key.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    #[command(flatten)]
    conn: Connection,
}

/// The hub's entry for statement `id`, its envelope parsed and checked to be that statement.
pub async fn fetch_entry(
    client: &mut crate::client::Client,
    id: StatementId,
) -> Result<(pb::SyncEntry, ParsedEnvelope)> {
    let entry = client
        .hub
        .get_statement(pb::GetStatementRequest {
            statement_id: id.0.to_vec(),
        })
        .await
        .map_err(crate::client::ClientError::from)?
        .into_inner();
    let envelope = entry
        .envelope
        .clone()
        .context("the hub sent no envelope for this statement")?;
    let parsed = ParsedEnvelope::parse(envelope)?;
    if parsed.id != id {
        bail!(
            "the hub sent statement {} for {id}: it is not the statement asked for",
            parsed.id
        );
    }
    Ok((entry, parsed))
}

/// The statement of `parsed` and its header, or why `me` has no body: erased, restricted to
/// others, or withheld by the hub.
pub fn readable(
    entry: &pb::SyncEntry,
    parsed: ParsedEnvelope,
    me: &crate::membership::MemberId,
) -> Result<(crate::statement::Statement, crate::statement::Header)> {
    let id = parsed.id;
    let Some(statement) = parsed.statement else {
        if let Some(by) = entry.erased_by {
            bail!(
                "statement {id} by '{}' was erased under legal order by the statement at entry {by}: its body is gone (`coalition show {id}` explains)",
                esc(parsed.header.issuer.as_str())
            );
        }
        if !parsed.header.readable_by(&Reader::Member(me.clone())) {
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
    Ok((statement, parsed.header))
}

/// Fetches statement `id` from the hub, checks it is the one asked for, and returns its body,
/// which `me` must be able to read.
pub async fn fetch_statement(
    client: &mut crate::client::Client,
    id: StatementId,
    me: &crate::membership::MemberId,
) -> Result<(
    pb::SyncEntry,
    crate::statement::Statement,
    crate::statement::Header,
)> {
    let (entry, parsed) = fetch_entry(client, id).await?;
    let (statement, header) = readable(&entry, parsed, me)?;
    Ok((entry, statement, header))
}

/// `coalition opinion`.
pub async fn opinion(args: OpinionArgs) -> Result<()> {
    let id = args.conn.member_id()?;
    let key = match &args.signing_key {
        Some(path) => load_signing_key(path)?,
        None => CertDir::new(&args.conn.certs).signing_key(&id)?,
    };
    let mut client = args.conn.connect().await?;
    let (_, target, header) = fetch_statement(&mut client, args.on.target()?, &id).await?;
    let opinion = args.on.opinion(
        args.verdict.into(),
        Some(&target.body),
        header.is_restricted(),
    )?;
    let recipients = seen_recipients(&args, &id, &target.issuer)?;
    let mut what = opinion.describe();
    if args.seen {
        what = format!("withdraw seen on {}", what.trim_start_matches("withdraw "));
    }
    if !recipients.is_everyone() {
        what.push_str(&format!(", readable by {recipients} (and auditors)"));
    }
    let envelope = sign_new_for(&id, &key, Body::Opinion(opinion), &recipients);
    let response = client.submit(envelope).await?;
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

/// Who reads an opinion (docs/PROTOCOL.md §2.7 "Seen"): everyone, except for a `seen` (and a
/// `withdraw --seen`), which goes to the entry's issuer `target_issuer` and the members named
/// with --recipient, unless --public.
fn seen_recipients(
    args: &OpinionArgs,
    me: &crate::membership::MemberId,
    target_issuer: &crate::membership::MemberId,
) -> Result<Recipients> {
    let restricted = match args.verdict {
        MemberVerdict::Seen => !args.public,
        MemberVerdict::Withdraw => args.seen,
        _ => false,
    };
    if args.seen && !matches!(args.verdict, MemberVerdict::Withdraw) {
        bail!("--seen goes with `withdraw` (to withdraw your seen); to report one, say `seen`");
    }
    if !restricted {
        if args.public && !matches!(args.verdict, MemberVerdict::Seen) {
            bail!("--public goes with `seen`; every other opinion is read by every member");
        }
        if !args.recipients.is_empty() {
            bail!(
                "--recipient goes with `seen` or `withdraw --seen`; every other opinion is read by every member"
            );
        }
        return Ok(Recipients::everyone());
    }
    // An opinion on one's own entry is refused by the hub (FAILED_PRECONDITION); the issuer
    // is never its own recipient.
    let mut members: Vec<_> = (target_issuer != me)
        .then(|| target_issuer.clone())
        .into_iter()
        .collect();
    for r in &args.recipients {
        members.push(
            crate::membership::MemberId::parse(r)
                .with_context(|| format!("--recipient '{}'", esc(r)))?,
        );
    }
    Recipients::from_members(members, me).context("--recipient")
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

/// `coalition show`'s first line: what the statement's signed header says and where it was
/// logged.
fn logged_line(
    id: StatementId,
    header: &crate::statement::Header,
    entry: &pb::SyncEntry,
) -> String {
    format!(
        "statement {id}: {} shared by '{}' with key {}, logged at entry {} on {}",
        header.kind.name(),
        esc(header.issuer.as_str()),
        header.key_id,
        entry.seq,
        format_ms(entry.received_at_ms)
    )
}

/// `coalition show` for a statement whose body the hub says was erased by the statement at
/// entry `by`: the header, the erasure, and whether the member's own sync state proves it
/// (a claim it disproves is an error).
fn show_erased(
    entry: &pb::SyncEntry,
    header: &crate::statement::Header,
    id: StatementId,
    by: u64,
    replica: &Replica,
) -> Result<()> {
    println!("{}", logged_line(id, header, entry));
    println!(
        "state: erased under legal order by the statement at entry {by}: its body is gone from the hub and from every replica that honoured the erasure; its signed header and leaf remain, so the log still verifies"
    );
    if by >= replica.size() {
        println!(
            "note: your sync state covers entries below {}; sync again to verify the erasure",
            replica.size()
        );
        return Ok(());
    }
    let erasure = replica
        .registry()
        .lifecycle()
        .retractions_of(&id)
        .iter()
        .find(|r| r.retraction.erase && r.position.seq == by);
    let Some(record) = erasure else {
        bail!(
            "the hub says statement {id} was erased at entry {by}, but your sync state holds no erasure of it there: do not trust this hub's answer"
        );
    };
    println!(
        "erasure {} at entry {by} by '{}' (admin quorum); reason \"{}\"; your sync state proves it",
        record.id,
        esc(record.issuer.as_str()),
        esc(&record.retraction.reason)
    );
    Ok(())
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
    let me = args.conn.member_id()?;
    let (entry, parsed) = fetch_entry(&mut args.conn.connect().await?, id).await?;
    if let (None, Some(by)) = (&parsed.statement, entry.erased_by) {
        return show_erased(&entry, &parsed.header, id, by, &replica);
    }
    let (statement, header) = readable(&entry, parsed, &me)?;
    println!("{}", logged_line(id, &header, &entry));
    if header.is_restricted() {
        println!(
            "restricted to: {} (and its issuer and auditors)",
            esc(&header.recipients.to_string())
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
            let states = registry.states(&target);
            let mut by_state = std::collections::BTreeMap::new();
            for i in 0..count {
                *by_state.entry(states.state(i)).or_insert(0u32) += 1;
            }
            // Most matching first: "entries: 3, 2 active, 1 retracted".
            println!(
                "entries: {count}, {}",
                by_state
                    .iter()
                    .rev()
                    .map(|(s, n)| format!("{n} {}", s.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // Each entry not plainly active, or that some opinion names (a `seen` too).
            let named: std::collections::BTreeSet<u32> = (0..count)
                .filter(|i| states.state(*i) != crate::lifecycle::EntryState::Active)
                .chain(
                    registry
                        .lifecycle()
                        .opinions_of(&id)
                        .iter()
                        .map(|r| r.opinion.entry)
                        .filter(|e| *e < count),
                )
                .collect();
            // This replica holds exactly the `seen` opinions the hub let this member read
            // (§2.7): count every one it holds.
            let reader = Reader::Everything;
            for i in named {
                let mut opinions = states.opinions(i);
                opinions.tally.seen = registry.seen(&target, i, &reader);
                let hash = entry_hash(&statement.body, i);
                let hash_tally = hash
                    .as_ref()
                    .map(|h| crate::lifecycle::Tally {
                        seen: registry.hash_seen(h, &statement.issuer, &reader),
                        ..registry.hash_tally(h, &statement.issuer)
                    })
                    .unwrap_or_default();
                println!(
                    "entry {i}: {}; opinions on it: {}{}; on its hash across statements: {}{}",
                    states.state(i).name(),
                    opinions.tally,
                    match opinions.admin_quarantine {
                        Some(true) => " (quarantined by admin quorum)",
                        Some(false) => " (released by admin quorum)",
                        None => "",
                    },
                    hash_tally,
                    hash.map(|h: HashKey| format!(" ({h})")).unwrap_or_default()
                );
            }
        }
        None => println!("a {} statement has no entries", statement.kind().name()),
    }
    let compromised = |m: &crate::membership::MemberId, k: &crate::membership::KeyId, at| {
        registry.is_compromised_for(m, k, at)
    };
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
    registry.with_judge(|judge| {
        for record in registry.lifecycle().opinions_of(&id) {
            let o = &record.opinion;
            let effect = match Lifecycle::opinion_verdict(record, &target, judge) {
                Ok(()) if !o.admin_quorum && !(judge.counts)(&record.issuer) => {
                    "not counted: its issuer is not an active member with the member role"
                        .to_owned()
                }
                Ok(()) if o.hash != entry_hash(&statement.body, o.entry) => {
                    "counted on the entry; its copy of the entry's hash is wrong (per-hash tallies are misled)".to_owned()
                }
                Ok(()) => "applies".to_owned(),
                Err(why) => format!("no effect: {why}"),
            };
            let track = if record.is_seen_track() {
                // "everyone" for an unrestricted one.
                format!(
                    " (seen track, readable by {})",
                    esc(&record.recipients.to_string())
                )
            } else {
                String::new()
            };
            println!(
                "opinion {} at entry {} by '{}'{}{track}: entry {} {}; note \"{}\"; {effect}",
                record.id,
                record.position.seq,
                esc(record.issuer.as_str()),
                if o.admin_quorum { " (admin quorum)" } else { "" },
                o.entry,
                o.verdict.name(),
                esc(&o.note)
            );
        }
    });
    Ok(())
}
