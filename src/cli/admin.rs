//! `coalition admin ...`: membership changes as signed statements (submitted, or written with
//! `--sign-only` for other admins to co-sign offline), and membership queries.

use super::Connection;
use crate::governance::{self, admission};
use crate::membership::{Action, Member, MemberId, Revocation, Role, format_ms, parse_time_ms};
use crate::pb;
use crate::pki::{CertDir, parse_public_key_hex};
use crate::text::escape_control as esc;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use ed25519_dalek::VerifyingKey;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Members: admit, suspend, reinstate, remove, change roles; list, show, history.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Members' signing keys: add, revoke.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// How many admin signatures a membership change needs.
    Quorum {
        #[command(subcommand)]
        command: QuorumCommand,
    },
    /// Coalition settings: quotas, the hub checkpoint key, the lifecycle (quarantine
    /// threshold); show the settings in force.
    Settings {
        #[command(subcommand)]
        command: SettingsCommand,
    },
    /// Retract a member's hash set or risk signal (or entries of it) by admin quorum, e.g.
    /// under a legal order; co-signed like a membership change.
    Retract(AdminRetractArgs),
    /// Erase a member's hash set or risk signal under a legal order, by admin quorum: it is
    /// withdrawn and its body is removed from the hub and from every member's copy that
    /// honours it; the signed header and the log entry stay. Co-signed like a membership
    /// change.
    Erase(AdminEraseArgs),
    /// Quarantine an entry by admin quorum (it stops matching, whatever the opinions);
    /// co-signed like a membership change.
    Quarantine(AdminOpinionArgs),
    /// Release an entry from quarantine by admin quorum (false-positive opinions logged
    /// before the release no longer count toward the threshold).
    Release(AdminOpinionArgs),
    /// Add your signature to a change file written with --sign-only (prints what it does).
    Cosign(CosignArgs),
    /// Submit a change file once enough admins have signed it.
    Submit(SubmitArgs),
    /// Show the coalition's governance: hub name and key, genesis, admins, quorum.
    Coalition {
        #[command(flatten)]
        conn: Connection,
    },
    /// The hub's access log: who synced or matched how much and when, oldest first (counts
    /// only; admins and auditors).
    AccessLog(AccessLogArgs),
}

#[derive(Debug, Args)]
pub struct AccessLogArgs {
    /// Calls that began at or after this time (RFC 3339 or ms since the epoch).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// ... and before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only this member's calls.
    #[arg(long = "member", value_name = "ID")]
    only_member: Option<String>,
    /// Print at most this many records.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Admit a new member with roles and signing keys.
    Admit(AdmitArgs),
    /// Bar a member from the hub until reinstated.
    Suspend(MemberArgs),
    /// Lift a suspension.
    Reinstate(MemberArgs),
    /// Remove a member for good.
    Remove(MemberArgs),
    /// Replace a member's roles.
    SetRoles(SetRolesArgs),
    /// List every member with roles, status and keys.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// One member's roles, status, keys and certificate pins.
    Show {
        /// The member.
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Every membership change that concerned a member.
    History {
        /// The member.
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Give a member another signing key (rotation: add the new key, then retire the old).
    Add(KeyAddArgs),
    /// Revoke a member's key as retired or compromised.
    Revoke(KeyRevokeArgs),
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Replace the per-member quota policy (0 or absent: unlimited).
    Quotas(QuotasArgs),
    /// Rotate the hub's checkpoint key: the change is signed by you and by the new key.
    RotateHubKey(RotateArgs),
    /// Set the lifecycle policy: how many distinct members' false-positive opinions
    /// quarantine an entry.
    Lifecycle(LifecycleArgs),
    /// Set the witness policy (which witnesses cosign the hub's checkpoints and the quorum
    /// members require; docs/PROTOCOL.md §3.8), or remove it with --none.
    Witnesses(WitnessesArgs),
    /// Set the trusted origins: the other hubs whose statements this hub's log may relay,
    /// and which peers may relay each (docs/PROTOCOL.md §3.10). Replaces the whole list.
    Federation(FederationArgs),
    /// The settings in force: quotas and every hub key with the log position it took over.
    Show {
        #[command(flatten)]
        conn: Connection,
    },
}

/// One set of quota limits.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Non-governance statements a member may submit per minute.
    #[arg(long, default_value_t = 0, value_name = "N")]
    submissions_per_minute: u64,
    /// ... per day.
    #[arg(long, default_value_t = 0, value_name = "N")]
    submissions_per_day: u64,
    /// Bytes of non-governance entries Sync may send a member per minute.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    sync_bytes_per_minute: u64,
    /// ... per day.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    sync_bytes_per_day: u64,
    /// Match calls a member may make per minute.
    #[arg(long, default_value_t = 0, value_name = "N")]
    matches_per_minute: u64,
    /// ... per day.
    #[arg(long, default_value_t = 0, value_name = "N")]
    matches_per_day: u64,
}

#[derive(Debug, Args)]
pub struct QuotasArgs {
    /// Limits of every member without an override.
    #[command(flatten)]
    limits: LimitArgs,
    /// A member's own limits (repeatable): ID=SUB_MIN,SUB_DAY,SYNC_BYTES_MIN,SYNC_BYTES_DAY,MATCH_MIN,MATCH_DAY
    /// (0: unlimited).
    #[arg(long = "member-limits", value_name = "ID=N,N,N,N,N,N")]
    members: Vec<String>,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct LifecycleArgs {
    /// Distinct members' false-positive opinions that quarantine an entry (1..=1000; the
    /// default before any change is 3).
    #[arg(long, value_name = "N")]
    quarantine_threshold: u32,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct WitnessesArgs {
    /// The policy file: `witness <verifier key> http://<host>:<port>` lines, `group <name>
    /// <k|all|any> <member>...` lines, and a last `quorum <name|none>` line.
    #[arg(long, value_name = "FILE", required_unless_present = "none")]
    policy: Option<PathBuf>,
    /// Remove the witness policy.
    #[arg(long, conflicts_with = "policy")]
    none: bool,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct FederationArgs {
    /// A trusted origin (repeatable): GENESIS=HUB_NAME, or GENESIS=HUB_NAME@RELAY,RELAY,...
    /// where GENESIS is its genesis statement id (64 hex), HUB_NAME the hub name its genesis
    /// gives, and each RELAY the genesis id of another trusted hub allowed to relay it here.
    #[arg(
        long = "origin",
        value_name = "GENESIS=HUB_NAME[@RELAY,...]",
        required_unless_present = "none"
    )]
    origins: Vec<String>,
    /// The member (with the `peer` role) through which a trusted origin pulls this hub's log
    /// (repeatable): GENESIS=MEMBER. Its pulls get the bodies of restricted statements naming
    /// that hub's members (`member@HUB_NAME`).
    #[arg(long = "peer-of", value_name = "GENESIS=MEMBER", requires = "origins")]
    peers: Vec<String>,
    /// Trust no origin: relaying stops (what was relayed stays in the log).
    #[arg(long, conflicts_with = "origins")]
    none: bool,
    #[command(flatten)]
    change: ChangeArgs,
}

/// Parses `--origin GENESIS=HUB_NAME[@RELAY,...]` and `--peer-of GENESIS=MEMBER` flags into
/// the federation section.
fn parse_origins(
    flags: &[String],
    peers: &[String],
) -> anyhow::Result<crate::settings::Federation> {
    use crate::statement::StatementId;
    let genesis = |text: &str, flag: &str| {
        StatementId::from_hex(text).ok_or_else(|| {
            anyhow::anyhow!("--origin {flag}: '{text}' is not a genesis id (64 hex characters)")
        })
    };
    let mut wire = crate::pb::FederationSettings::default();
    for flag in flags {
        let (id, rest) = flag.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--origin {flag}: expected GENESIS=HUB_NAME[@RELAY,...]")
        })?;
        let (name, relays) = rest.split_once('@').unwrap_or((rest, ""));
        let mut relayed_by = relays
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|r| genesis(r, flag).map(|g| g.0.to_vec()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        relayed_by.sort();
        wire.origins.push(crate::pb::TrustedOrigin {
            genesis_id: genesis(id, flag)?.0.to_vec(),
            hub_name: name.to_owned(),
            relayed_by,
            peer: String::new(),
        });
    }
    for flag in peers {
        let (id, member) = flag
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--peer-of {flag}: expected GENESIS=MEMBER"))?;
        let id = genesis(id, flag)?.0.to_vec();
        let origin = wire
            .origins
            .iter_mut()
            .find(|o| o.genesis_id == id)
            .ok_or_else(|| anyhow::anyhow!("--peer-of {flag}: no --origin names this genesis"))?;
        anyhow::ensure!(
            origin.peer.is_empty(),
            "--peer-of {flag}: that origin's peer is given twice"
        );
        origin.peer = member.to_owned();
    }
    wire.origins.sort_by(|a, b| a.genesis_id.cmp(&b.genesis_id));
    Ok(crate::settings::Federation::from_wire(&wire)?)
}

#[derive(Debug, Args)]
pub struct AdminOpinionArgs {
    #[command(flatten)]
    on: super::lifecycle::EntryArgs,
    /// Only sign: write the envelope (DSSE JSON) to FILE for other admins to co-sign.
    #[arg(long, value_name = "FILE")]
    sign_only: Option<PathBuf>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The new hub signing key (PKCS#8 PEM, as `hub.sign.key`); it co-signs the change.
    #[arg(long, value_name = "FILE")]
    new_key: PathBuf,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Debug, Subcommand)]
pub enum QuorumCommand {
    /// Set the number of admin signatures a change needs.
    Set {
        /// 1..=number of admins able to sign.
        quorum: u32,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

/// What every change command takes: who signs (`--as`), why, and whether to submit.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Why, recorded in the member's history.
    #[arg(long, default_value = "")]
    reason: String,
    /// Only sign: write the envelope (DSSE JSON) to FILE for other admins to co-sign.
    #[arg(long, value_name = "FILE")]
    sign_only: Option<PathBuf>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The member.
    id: String,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct AdmitArgs {
    /// The new member's id.
    #[arg(long)]
    id: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Roles: admin, member, auditor, peer.
    #[arg(long = "role", default_values_t = ["member".to_string()])]
    roles: Vec<String>,
    #[command(flatten)]
    keys: KeyInput,
    /// Pin the member to this client certificate (PEM; repeatable).
    #[arg(long = "pin-cert", value_name = "PEM")]
    pin_certs: Vec<PathBuf>,
    #[command(flatten)]
    change: ChangeArgs,
}

/// Public keys given on the command line.
#[derive(Debug, Args)]
pub struct KeyInput {
    /// ed25519 public key as 64 hex characters (repeatable).
    #[arg(long = "key")]
    keys: Vec<String>,
    /// File holding a hex public key (repeatable). Default: <certs>/members/<id>.sign.pub.
    #[arg(long = "key-file")]
    key_files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetRolesArgs {
    /// The member.
    id: String,
    /// Its complete new set of roles.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// The member.
    #[arg(long = "member", value_name = "ID")]
    owner: String,
    #[command(flatten)]
    keys: KeyInput,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RevokeReason {
    /// Rotated out; what it signed before stays valid.
    Retired,
    /// Leaked; what was logged from --since on is flagged.
    Compromised,
}

#[derive(Debug, Args)]
pub struct KeyRevokeArgs {
    /// The member.
    #[arg(long = "member", value_name = "ID")]
    owner: String,
    /// The key id (16 hex characters).
    #[arg(long)]
    key_id: String,
    /// Why.
    #[arg(long = "why", value_enum)]
    why: RevokeReason,
    /// Compromised keys: from when it is distrusted (RFC 3339 or ms since the epoch).
    #[arg(long)]
    since: Option<String>,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct AdminRetractArgs {
    #[command(flatten)]
    what: super::lifecycle::RetractionArgs,
    /// Only sign: write the envelope (DSSE JSON) to FILE for other admins to co-sign.
    #[arg(long, value_name = "FILE")]
    sign_only: Option<PathBuf>,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, Args)]
pub struct AdminEraseArgs {
    /// The statement id (64 hex) of the hash set or risk signal to erase (whole).
    #[arg(value_name = "STATEMENT_ID")]
    statement_id: String,
    /// Why (the legal order), for every member who holds a copy (1..=1000 characters).
    #[arg(long)]
    reason: String,
    /// Only sign: write the envelope (DSSE JSON) to FILE for other admins to co-sign.
    #[arg(long, value_name = "FILE")]
    sign_only: Option<PathBuf>,
    #[command(flatten)]
    conn: Connection,
}

impl AdminEraseArgs {
    /// The erasure, checked as the hub checks it.
    fn erasure(&self) -> Result<crate::lifecycle::Retraction> {
        let target =
            crate::statement::StatementId::from_hex(&self.statement_id).with_context(|| {
                format!("'{}' is not a 64-hex statement id", esc(&self.statement_id))
            })?;
        let wire = crate::lifecycle::Retraction {
            target,
            entries: Vec::new(),
            reason: self.reason.clone(),
            admin_quorum: true,
            erase: true,
        }
        .to_wire();
        Ok(crate::lifecycle::Retraction::from_wire(wire)?)
    }
}

#[derive(Debug, Args)]
pub struct CosignArgs {
    /// The change file (written by --sign-only); updated in place unless --out is given.
    file: PathBuf,
    /// Write the co-signed envelope here instead.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Admin member id whose signing key signs (<certs>/members/<id>.sign.key).
    #[arg(
        long = "as",
        env = "COALITION_MEMBER",
        value_name = "ID",
        required_unless_present = "key"
    )]
    member: Option<String>,
    /// Sign with this signing key file instead (PKCS#8 PEM): e.g. the new hub key a hub key
    /// rotation names, proving the hub holds it.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Development PKI directory.
    #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
    certs: PathBuf,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The change file.
    file: PathBuf,
    #[command(flatten)]
    conn: Connection,
}

pub async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Member { command } => member(command).await,
        AdminCommand::Key {
            command: KeyCommand::Add(args),
        } => {
            let member = MemberId::parse(&args.owner)?;
            let keys = read_keys(&args.keys, &member, &args.change.conn.certs)?;
            let [key] = keys.as_slice() else {
                bail!("give exactly one --key or --key-file (one key per change)");
            };
            let action = Action::AddKey { member, key: *key };
            change(action, &args.change).await
        }
        AdminCommand::Key {
            command: KeyCommand::Revoke(args),
        } => {
            let revocation = match (args.why, &args.since) {
                (RevokeReason::Retired, None) => Revocation::Retired,
                (RevokeReason::Retired, Some(_)) => {
                    bail!("--since is only for --why compromised")
                }
                (RevokeReason::Compromised, Some(since)) => Revocation::Compromised {
                    compromised_at_ms: parse_time_ms(since).map_err(anyhow::Error::msg)?,
                },
                (RevokeReason::Compromised, None) => bail!(
                    "--why compromised needs --since TIME: from when the key is distrusted (statements logged from then on are flagged)"
                ),
            };
            let action = Action::RevokeKey {
                member: MemberId::parse(&args.owner)?,
                key_id: crate::membership::KeyId::parse(&args.key_id)?,
                revocation,
            };
            change(action, &args.change).await
        }
        AdminCommand::Quorum {
            command: QuorumCommand::Set { quorum, change: c },
        } => change(Action::SetQuorum(quorum), &c).await,
        AdminCommand::Settings { command } => settings(command).await,
        AdminCommand::Retract(args) => {
            let issuer = args.conn.member_id()?;
            let key = CertDir::new(&args.conn.certs).signing_key(&issuer)?;
            let envelope = governance::retraction(&issuer, &key, args.what.retraction(true)?);
            let change = ChangeArgs {
                reason: String::new(),
                sign_only: args.sign_only,
                conn: args.conn,
            };
            sign_or_submit(envelope, &change).await
        }
        AdminCommand::Erase(args) => {
            let issuer = args.conn.member_id()?;
            let key = CertDir::new(&args.conn.certs).signing_key(&issuer)?;
            let envelope = governance::retraction(&issuer, &key, args.erasure()?);
            let change = ChangeArgs {
                reason: String::new(),
                sign_only: args.sign_only,
                conn: args.conn,
            };
            sign_or_submit(envelope, &change).await
        }
        AdminCommand::Quarantine(args) => {
            admin_opinion(args, crate::lifecycle::Verdict::Quarantine).await
        }
        AdminCommand::Release(args) => {
            admin_opinion(args, crate::lifecycle::Verdict::Release).await
        }
        AdminCommand::Cosign(args) => {
            let mut envelope = governance::read_envelope(&args.file)?;
            let key = match &args.key {
                Some(file) => crate::pki::load_signing_key(file)?,
                None => {
                    let id = MemberId::parse(args.member.as_deref().unwrap_or_default())?;
                    CertDir::new(&args.certs).signing_key(&id)?
                }
            };
            let added = governance::cosign(&mut envelope, &key)?;
            let out = args.out.as_ref().unwrap_or(&args.file);
            governance::write_envelope(out, &envelope)?;
            println!(
                "{} {}: {}",
                if added {
                    "co-signed"
                } else {
                    "already signed by this key,"
                },
                out.display(),
                esc(&governance::describe(&envelope)?)
            );
            Ok(())
        }
        AdminCommand::Submit(args) => {
            let envelope = governance::read_envelope(&args.file)?;
            let what = esc(&governance::describe(&envelope)?).into_owned();
            submit(&args.conn, envelope, &what).await
        }
        AdminCommand::AccessLog(args) => access_log(args).await,
        AdminCommand::Coalition { conn } => {
            let c = conn.connect().await?.coalition().await?;
            println!(
                "hub '{}' key {} genesis {} quorum {} of admins {} ({} log entries)",
                esc(&c.hub_name),
                hex::encode(&c.hub_public_key),
                hex::encode(&c.genesis_statement_id),
                c.quorum,
                esc(&c.admins.join(",")),
                c.log_size
            );
            Ok(())
        }
    }
}

async fn member(command: MemberCommand) -> Result<()> {
    match command {
        MemberCommand::Admit(args) => {
            let id = MemberId::parse(&args.id)?;
            let roles = parse_roles(&args.roles)?;
            let keys = read_keys(&args.keys, &id, &args.change.conn.certs)?;
            let mut admitted = admission(&id, &args.name, &roles, &keys);
            for pem in &args.pin_certs {
                admitted.cert_pins.push(cert_fingerprint(pem)?);
            }
            change(Action::Admit(admitted), &args.change).await
        }
        MemberCommand::Suspend(a) => {
            change(Action::Suspend(MemberId::parse(&a.id)?), &a.change).await
        }
        MemberCommand::Reinstate(a) => {
            change(Action::Reinstate(MemberId::parse(&a.id)?), &a.change).await
        }
        MemberCommand::Remove(a) => {
            change(Action::Remove(MemberId::parse(&a.id)?), &a.change).await
        }
        MemberCommand::SetRoles(a) => {
            let action = Action::SetRoles {
                member: MemberId::parse(&a.id)?,
                roles: parse_roles(&a.roles)?,
            };
            change(action, &a.change).await
        }
        MemberCommand::List { conn } => {
            for m in &conn.connect().await?.members().await? {
                print_member(m);
            }
            Ok(())
        }
        MemberCommand::Show { id, conn } => {
            let m = conn.connect().await?.member(&MemberId::parse(&id)?).await?;
            print_member(&m);
            for k in &m.keys {
                let revoked = match (k.revoked_seq, k.compromised_at_ms) {
                    (Some(seq), Some(at)) => {
                        format!(
                            ", revoked at entry {seq}, distrusted since {}",
                            format_ms(at)
                        )
                    }
                    (Some(seq), None) => format!(", revoked at entry {seq}"),
                    _ => String::new(),
                };
                println!(
                    "  key {} {:?} (added at entry {}{revoked})",
                    k.key_id, k.status, k.added_seq
                );
            }
            for pin in &m.cert_pins {
                println!("  certificate pin sha256:{}", hex::encode(pin));
            }
            Ok(())
        }
        MemberCommand::History { id, conn } => {
            let history = conn
                .connect()
                .await?
                .history(&MemberId::parse(&id)?)
                .await?;
            for e in &history.events {
                println!(
                    "entry {} {} {}{} (signed by {}; statement {})",
                    e.seq,
                    format_ms(e.received_at_ms),
                    esc(&e.change),
                    if e.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", esc(&e.reason))
                    },
                    esc(&e.signed_by.join(",")),
                    hex::encode(&e.statement_id)
                );
            }
            Ok(())
        }
    }
}

/// `coalition admin quarantine|release`: the target fetched (its entry's hash is copied,
/// unless it is restricted: then no hash is copied, and admins who may not read its body judge
/// it by its signed header), signed by this admin, written for co-signing or submitted.
async fn admin_opinion(args: AdminOpinionArgs, verdict: crate::lifecycle::Verdict) -> Result<()> {
    let issuer = args.conn.member_id()?;
    let key = CertDir::new(&args.conn.certs).signing_key(&issuer)?;
    let mut client = args.conn.connect().await?;
    let (entry, parsed) = super::lifecycle::fetch_entry(&mut client, args.on.target()?).await?;
    let restricted = parsed.header.is_restricted();
    let opinion = if parsed.statement.is_none() && restricted && entry.erased_by.is_none() {
        args.on.opinion(verdict, None, true)?
    } else {
        let (target, _) = super::lifecycle::readable(&entry, parsed, &issuer)?;
        args.on.opinion(verdict, Some(&target.body), restricted)?
    };
    let envelope = crate::client::sign_new(&issuer, &key, crate::statement::Body::Opinion(opinion));
    let change = ChangeArgs {
        reason: String::new(),
        sign_only: args.sign_only,
        conn: args.conn,
    };
    sign_or_submit(envelope, &change).await
}

async fn settings(command: SettingsCommand) -> Result<()> {
    use crate::settings::{QuotaLimits, Quotas, Section};
    match command {
        SettingsCommand::Quotas(args) => {
            let l = &args.limits;
            let default_limits = limits([
                l.submissions_per_minute,
                l.submissions_per_day,
                l.sync_bytes_per_minute,
                l.sync_bytes_per_day,
                l.matches_per_minute,
                l.matches_per_day,
            ]);
            let mut members = std::collections::BTreeMap::new();
            for spec in &args.members {
                let (id, numbers) = spec
                    .split_once('=')
                    .with_context(|| format!("--member-limits {spec}: expected ID=N,N,N,N,N,N"))?;
                let numbers = numbers
                    .split(',')
                    .map(|n| n.trim().parse::<u64>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("--member-limits {spec}: numbers expected"))?;
                let six: [u64; 6] = numbers.try_into().map_err(|_| {
                    anyhow::anyhow!("--member-limits {spec}: six numbers expected (0: unlimited)")
                })?;
                members.insert(MemberId::parse(id)?, limits(six));
            }
            let section = Section::Quotas(Quotas {
                default_limits,
                members,
            });
            let change = &args.change;
            let issuer = change.conn.member_id()?;
            let key = CertDir::new(&change.conn.certs).signing_key(&issuer)?;
            let envelope = governance::settings(&issuer, &key, section, &change.reason);
            sign_or_submit(envelope, change).await
        }
        SettingsCommand::RotateHubKey(args) => {
            let new_key = crate::pki::load_signing_key(&args.new_key)?;
            let change = &args.change;
            let issuer = change.conn.member_id()?;
            let key = CertDir::new(&change.conn.certs).signing_key(&issuer)?;
            let section = Section::HubKey(new_key.verifying_key());
            let mut envelope = governance::settings(&issuer, &key, section, &change.reason);
            governance::cosign(&mut envelope, &new_key)?;
            sign_or_submit(envelope, change).await
        }
        SettingsCommand::Lifecycle(args) => {
            let section = Section::Lifecycle(crate::settings::LifecycleSettings::from_wire(
                &pb::LifecycleSettings {
                    quarantine_threshold: args.quarantine_threshold,
                },
            )?);
            if args.quarantine_threshold == 0 {
                bail!(
                    "--quarantine-threshold: must be 1..={}",
                    crate::lifecycle::MAX_QUARANTINE_THRESHOLD
                );
            }
            let change = &args.change;
            let issuer = change.conn.member_id()?;
            let key = CertDir::new(&change.conn.certs).signing_key(&issuer)?;
            let envelope = governance::settings(&issuer, &key, section, &change.reason);
            sign_or_submit(envelope, change).await
        }
        SettingsCommand::Witnesses(args) => {
            let policy = match &args.policy {
                Some(path) => {
                    let max = crate::witness::policy::MAX_POLICY_BYTES as u64;
                    let text = super::read_text_file(path, max, "the witness policy")?;
                    let policy = crate::witness::policy::WitnessPolicy::parse(&text)
                        .with_context(|| format!("{}", path.display()))?;
                    Some(policy)
                }
                None => None,
            };
            let change = &args.change;
            let issuer = change.conn.member_id()?;
            let key = CertDir::new(&change.conn.certs).signing_key(&issuer)?;
            let section = Section::Witnesses(policy);
            let envelope = governance::settings(&issuer, &key, section, &change.reason);
            sign_or_submit(envelope, change).await
        }
        SettingsCommand::Federation(args) => {
            let federation = if args.none {
                crate::settings::Federation::default()
            } else {
                parse_origins(&args.origins, &args.peers)?
            };
            let change = &args.change;
            let issuer = change.conn.member_id()?;
            let key = CertDir::new(&change.conn.certs).signing_key(&issuer)?;
            let section = Section::Federation(federation);
            let envelope = governance::settings(&issuer, &key, section, &change.reason);
            sign_or_submit(envelope, change).await
        }
        SettingsCommand::Show { conn } => {
            let c = conn.connect().await?.coalition().await?;
            let s = c.settings.unwrap_or_default();
            let q = Quotas::from_wire(s.quotas.unwrap_or_default(), "quotas")?;
            let show = |l: &QuotaLimits| {
                let n = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
                format!(
                    "submissions {}/min {}/day, sync bytes {}/min {}/day, matches {}/min {}/day",
                    n(l.submissions_per_minute),
                    n(l.submissions_per_day),
                    n(l.sync_bytes_per_minute),
                    n(l.sync_bytes_per_day),
                    n(l.match_queries_per_minute),
                    n(l.match_queries_per_day)
                )
            };
            println!("settings revision {}", s.revision);
            let lifecycle =
                crate::settings::LifecycleSettings::from_wire(&s.lifecycle.unwrap_or_default())?;
            println!(
                "lifecycle: {} distinct false-positive opinions quarantine an entry",
                lifecycle.quarantine_threshold
            );
            match s.witnesses.as_ref().filter(|w| !w.policy.trim().is_empty()) {
                Some(w) => {
                    let policy = crate::witness::policy::WitnessPolicy::parse(&w.policy)?;
                    println!("witnesses: {}", policy.describe());
                }
                None => println!("witnesses: no policy"),
            }
            let federation =
                crate::settings::Federation::from_wire(&s.federation.unwrap_or_default())?;
            if federation.origins.is_empty() {
                println!("federation: no trusted origin");
            }
            for (genesis, o) in &federation.origins {
                let relays: Vec<String> = o.relayed_by.iter().map(|r| r.to_string()).collect();
                println!(
                    "federation: trusts '{}' (genesis {genesis}){}{}",
                    o.hub_name,
                    if relays.is_empty() {
                        String::new()
                    } else {
                        format!(", relayed by {}", relays.join(", "))
                    },
                    o.peer
                        .as_ref()
                        .map(|p| format!(", pulling here as '{p}'"))
                        .unwrap_or_default()
                );
            }
            println!("quotas default: {}", show(&q.default_limits));
            for (id, l) in &q.members {
                println!("quotas for '{id}': {}", show(l));
            }
            for p in &s.hub_keys {
                println!(
                    "hub key {} signs checkpoints of more than {} entries{}",
                    hex::encode(&p.hub_public_key),
                    p.from_seq,
                    if p.hub_public_key == c.hub_public_key {
                        " (current)"
                    } else {
                        " (retired)"
                    }
                );
            }
            Ok(())
        }
    }
}

fn limits(v: [u64; 6]) -> crate::settings::QuotaLimits {
    let l = |n: u64| (n > 0).then_some(n);
    crate::settings::QuotaLimits {
        submissions_per_minute: l(v[0]),
        submissions_per_day: l(v[1]),
        sync_bytes_per_minute: l(v[2]),
        sync_bytes_per_day: l(v[3]),
        match_queries_per_minute: l(v[4]),
        match_queries_per_day: l(v[5]),
    }
}

/// Signs a change as `--as`, then submits it or (with `--sign-only`) writes it for co-signing.
async fn change(action: Action, args: &ChangeArgs) -> Result<()> {
    let issuer = args.conn.member_id()?;
    let key = CertDir::new(&args.conn.certs).signing_key(&issuer)?;
    let envelope = governance::change(&issuer, &key, action, &args.reason);
    sign_or_submit(envelope, args).await
}

/// Submits a signed change or (with `--sign-only`) writes it for co-signing.
async fn sign_or_submit(envelope: pb::Envelope, args: &ChangeArgs) -> Result<()> {
    let what = esc(&governance::describe(&envelope)?).into_owned();
    match &args.sign_only {
        Some(path) => {
            governance::write_envelope(path, &envelope)?;
            println!(
                "wrote {}: {what}; other admins add signatures with `coalition admin cosign {0} --as ID`, then one of the signers runs `coalition admin submit {0} --as ID`",
                path.display()
            );
            Ok(())
        }
        None => submit(&args.conn, envelope, &what).await,
    }
}

async fn submit(conn: &Connection, envelope: pb::Envelope, what: &str) -> Result<()> {
    let response = conn.connect().await?.submit(envelope).await?;
    let seq = response.receipt.map_or(0, |r| r.seq);
    println!(
        "{} at log entry {seq}: {what}",
        if response.already_present {
            "already logged"
        } else {
            "logged"
        }
    );
    Ok(())
}

fn parse_roles(names: &[String]) -> Result<Vec<Role>> {
    names
        .iter()
        .map(|r| {
            Role::parse(r)
                .with_context(|| format!("unknown role '{r}' (admin, member, auditor, peer)"))
        })
        .collect()
}

fn read_keys(
    input: &KeyInput,
    id: &MemberId,
    certs: &std::path::Path,
) -> Result<Vec<VerifyingKey>> {
    let mut keys = Vec::new();
    for k in &input.keys {
        keys.push(parse_public_key_hex(k).map_err(|e| anyhow::anyhow!("--key {k}: {e}"))?);
    }
    let mut files = input.key_files.clone();
    if keys.is_empty() && files.is_empty() {
        let default = certs.join("members").join(format!("{id}.sign.pub"));
        if default.exists() {
            files.push(default);
        }
    }
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        keys.push(
            parse_public_key_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
        );
    }
    Ok(keys)
}

fn cert_fingerprint(path: &std::path::Path) -> Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let der = CertificateDer::from_pem_slice(&pem);
    let der =
        der.map_err(|e| anyhow::anyhow!("{}: not a PEM certificate ({e})", path.display()))?;
    Ok(Sha256::digest(der.as_ref()).into())
}

/// One line per member.
pub fn print_member(m: &Member) {
    let roles: Vec<&str> = m.roles.iter().map(|r| r.name()).collect();
    let keys: Vec<String> = m
        .keys
        .iter()
        .map(|k| match k.status {
            crate::membership::KeyStatus::Active => k.key_id.to_string(),
            crate::membership::KeyStatus::Retired => format!("{}(retired)", k.key_id),
            crate::membership::KeyStatus::Compromised => format!("{}(compromised)", k.key_id),
        })
        .collect();
    println!(
        "{} ({}) roles={} status={:?} keys={}",
        m.id,
        if m.display_name.is_empty() {
            "-".into()
        } else {
            esc(&m.display_name)
        },
        roles.join(","),
        m.status,
        keys.join(",")
    );
}

/// Pages through `Admin.ListAccess`, one line per record.
async fn access_log(args: AccessLogArgs) -> Result<()> {
    let time = |t: &Option<String>| -> Result<i64> {
        t.as_deref()
            .map_or(Ok(0), |t| parse_time_ms(t).map_err(anyhow::Error::msg))
    };
    let (from_ms, to_ms) = (time(&args.since)?, time(&args.until)?);
    let member_id = match &args.only_member {
        Some(m) => MemberId::parse(m)?.to_string(),
        None => String::new(),
    };
    let mut client = args.conn.connect().await?;
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut page_token = Vec::new();
    while left > 0 {
        let page = client
            .admin
            .list_access(pb::ListAccessRequest {
                from_ms,
                to_ms,
                member_id: member_id.clone(),
                limit: left.min(crate::store::MAX_ACCESS_PAGE as u64) as u32,
                page_token,
            })
            .await
            .map_err(crate::client::ClientError::from)?
            .into_inner();
        for r in page.records.iter().take(left as usize) {
            let counts = match r.rpc.as_str() {
                "Sync" => format!("entries={} bytes={}", r.entries, r.bytes),
                _ => format!("queries={} hits={} bytes={}", r.queries, r.hits, r.bytes),
            };
            println!(
                "{} {} {} {counts} duration_ms={}",
                format_ms(r.started_at_ms),
                esc(&r.member_id),
                esc(&r.rpc),
                (r.ended_at_ms - r.started_at_ms).max(0)
            );
        }
        left = left.saturating_sub(page.records.len() as u64);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(())
}
