//! `coalition audit ...`: export a hub's log and checkpoints to a bundle, and verify a bundle
//! offline from its genesis.

use super::Connection;
use crate::audit::{Summary, verify_bundle_as};
use crate::membership::MemberId;
use crate::statement::Reader;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write the hub's whole log and every signed checkpoint to a self-contained bundle file
    /// (as an auditor or any member), for `coalition audit verify`.
    Export {
        /// The bundle file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Replay a bundle (or, with --hub, the live hub) from its genesis: every signature
    /// against the membership of its time, every membership change's quorum, the Merkle root
    /// against every signed checkpoint, every cosignature of a witness against the witness
    /// policy of its time.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle file (written by `coalition audit export`); omit it with --hub.
    #[arg(required_unless_present = "hub")]
    file: Option<PathBuf>,
    /// Verify the live hub instead: export it to a temporary bundle, then verify that.
    #[arg(long, conflicts_with = "file")]
    hub: Option<String>,
    /// Member id to connect as (with --hub); with a bundle FILE, the member that exported it.
    /// A member that is not an auditor gets no body of a restricted statement it may not read
    /// (docs/PROTOCOL.md §2.7): those alone may be missing. Without it every body must be there.
    #[arg(long = "as", env = "COALITION_MEMBER", value_name = "ID")]
    member: Option<String>,
    /// Development PKI directory (with --hub).
    #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
    certs: PathBuf,
    /// A checkpoint saved earlier (signed note file): the log must be consistent with it.
    /// Repeatable.
    #[arg(long = "previous", value_name = "CHECKPOINT")]
    previous: Vec<PathBuf>,
    /// The genesis statement id (hex) you trust for this hub; refuse any other.
    #[arg(long, value_name = "HEX")]
    genesis: Option<String>,
    /// Fail (exit 1) unless the last checkpoint's cosignatures meet the witness policy of the
    /// replayed settings. Without it a policy not met is reported, not refused. A log whose
    /// settings hold no witness policy passes either way.
    #[arg(long)]
    require_witnessed: bool,
}

pub async fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Export { out, conn } => {
            let mut client = conn.connect().await?;
            let (entries, checkpoints) = client.export_bundle(&out).await?;
            println!(
                "exported {entries} entries and {checkpoints} signed checkpoint(s) to {}; verify with `coalition audit verify {0}`",
                out.display()
            );
            Ok(())
        }
        AuditCommand::Verify(args) => {
            let _live_dir;
            let file = match (&args.file, &args.hub) {
                (Some(file), _) => file.clone(),
                (None, Some(hub)) => {
                    let Some(member) = args.member.clone() else {
                        bail!("say who you connect as with --as ID");
                    };
                    let conn = Connection {
                        hub: hub.clone(),
                        member,
                        certs: args.certs.clone(),
                    };
                    let dir = tempfile::tempdir().context("creating a temporary directory")?;
                    let path = dir.path().join("live.bundle");
                    conn.connect().await?.export_bundle(&path).await?;
                    _live_dir = dir;
                    path
                }
                (None, None) => bail!("give a bundle FILE or --hub ADDR"),
            };
            let previous = args
                .previous
                .iter()
                .map(|p| {
                    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            // Exported by a member: the bodies of restricted statements it may not read are
            // not in the bundle (§2.7). An auditor's export holds every body.
            let reader = match &args.member {
                Some(member) => Reader::Member(MemberId::parse(member)?),
                None => Reader::Everything,
            };
            let summary =
                tokio::task::spawn_blocking(move || verify_bundle_as(&file, &previous, reader))
                    .await
                    .context("the verifier stopped")?
                    .map_err(|e| anyhow::anyhow!("audit FAILED: {e}"))?;
            check_genesis(&summary, args.genesis.as_deref())?;
            if args.require_witnessed
                && let Some(w) = summary.witnessing.as_ref().filter(|w| !w.witnessed.met)
            {
                bail!("audit FAILED: {} (--require-witnessed)", w.line());
            }
            print_summary(&summary);
            Ok(())
        }
    }
}

fn check_genesis(summary: &Summary, pinned: Option<&str>) -> Result<()> {
    if let Some(pinned) = pinned
        && !summary
            .genesis_id
            .to_string()
            .eq_ignore_ascii_case(pinned.trim())
    {
        bail!(
            "audit FAILED: the log's genesis is {}, not the pinned {pinned}: this is another hub's history",
            summary.genesis_id
        );
    }
    Ok(())
}

/// The summary lines of a successful audit.
pub fn print_summary(s: &Summary) {
    println!(
        "audit OK: hub '{}' (genesis {}): {} entries replayed from the genesis ({} membership changes); {} members ever admitted, {} active",
        s.hub_name,
        s.genesis_id,
        s.entries,
        s.membership_entries - s.retractions,
        s.members,
        s.active_members
    );
    if s.retractions > 0 {
        println!(
            "  {} retraction(s) verified (signatures and entitlement), {} naming a statement the log did not hold before them (no effect)",
            s.retractions, s.retractions_without_target
        );
    }
    if let Some(size) = s.latest_checkpoint {
        println!(
            "  {} signed checkpoint(s) match the recomputed Merkle root, the latest at size {size}, the log's size",
            s.checkpoints
        );
    }
    if let Some(size) = s.previous {
        println!("  consistent with the previous checkpoint of size {size}");
    }
    match &s.witnessing {
        Some(w) => println!(
            "  every cosignature of a policy witness verifies; witnesses: {}",
            w.line()
        ),
        None => println!("  witnesses: the settings hold no witness policy"),
    }
    for (name, genesis, entries) in &s.origins {
        println!(
            "  relayed from '{}' (genesis {genesis}): its log rebuilt to {entries} entries, each judged by its own membership and proven by its signed checkpoints",
            crate::text::escape_control(name)
        );
    }
    println!("  root of all {} entries: {}", s.entries, s.root.to_hex());
}
