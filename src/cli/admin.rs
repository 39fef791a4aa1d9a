//! `coalition admin ...`: membership administration over the Admin RPC, or offline against a
//! stopped hub's data directory (bootstrap).

use super::Connection;
use crate::client::ClientError;
use crate::membership::{Member, MemberId, Role};
use crate::pb;
use crate::store::{Store, StoreConfig, now_ms};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Members and their keys.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Register a member and its signing keys.
    Add(AddArgs),
    /// List members.
    List(Target),
}

/// Where an admin command acts: a running hub (as an admin) or a stopped hub's data directory.
#[derive(Debug, Args)]
pub struct Target {
    /// Act offline on this data directory (the hub must be stopped). Used to bootstrap the
    /// first admin.
    #[arg(long, conflicts_with_all = ["hub", "member"])]
    data: Option<PathBuf>,
    /// Hub address.
    #[arg(long, env = "COALITION_HUB")]
    hub: Option<String>,
    /// Admin member id to act as.
    #[arg(long = "as", env = "COALITION_MEMBER", value_name = "ID")]
    member: Option<String>,
    /// Development PKI directory.
    #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
    certs: PathBuf,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The new member's id.
    #[arg(long)]
    id: String,
    /// Display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Roles: admin, member, auditor, peer.
    #[arg(long = "role", default_values_t = ["member".to_string()])]
    roles: Vec<String>,
    /// ed25519 public key as 64 hex characters (repeatable).
    #[arg(long = "key")]
    keys: Vec<String>,
    /// File holding a hex public key (repeatable). Default: <certs>/members/<id>.sign.pub.
    #[arg(long = "key-file")]
    key_files: Vec<PathBuf>,
    #[command(flatten)]
    target: Target,
}

pub async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Member {
            command: MemberCommand::Add(args),
        } => add(args).await,
        AdminCommand::Member {
            command: MemberCommand::List(target),
        } => {
            let members = match &target.data {
                Some(dir) => open_offline(dir)?.members()?,
                None => connection(&target)?.connect().await?.members().await?,
            };
            for m in &members {
                print_member(m);
            }
            Ok(())
        }
    }
}

async fn add(args: AddArgs) -> Result<()> {
    let mut keys = Vec::new();
    for k in &args.keys {
        keys.push(hex::decode(k.trim()).with_context(|| format!("--key {k} is not hex"))?);
    }
    let mut key_files = args.key_files.clone();
    if keys.is_empty() && key_files.is_empty() {
        let id = MemberId::parse(&args.id)?;
        let default = args
            .target
            .certs
            .join("members")
            .join(format!("{id}.sign.pub"));
        if default.exists() {
            key_files.push(default);
        }
    }
    for f in &key_files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        keys.push(
            hex::decode(text.trim())
                .with_context(|| format!("{} does not hold a hex public key", f.display()))?,
        );
    }
    let mut roles = Vec::new();
    for r in &args.roles {
        let role = Role::parse(r)
            .with_context(|| format!("unknown role '{r}' (admin, member, auditor, peer)"))?;
        roles.push(role.to_wire() as i32);
    }
    let request = pb::AddMemberRequest {
        member_id: args.id.clone(),
        display_name: args.name.clone(),
        roles,
        public_keys: keys,
    };
    let member = match &args.target.data {
        Some(dir) => {
            let member = Member::admit(request, now_ms())?;
            open_offline(dir)?.add_member(&member)?;
            member
        }
        None => {
            let mut client = connection(&args.target)?.connect().await?;
            let wire = client
                .admin
                .add_member(request)
                .await
                .map_err(ClientError::from)?
                .into_inner();
            Member::from_wire(wire)?
        }
    };
    print!("added ");
    print_member(&member);
    Ok(())
}

fn connection(target: &Target) -> Result<Connection> {
    let Some(member) = target.member.clone() else {
        bail!("say which admin you act as with --as ID (or act offline with --data DIR)");
    };
    Ok(Connection {
        hub: target
            .hub
            .clone()
            .unwrap_or_else(|| "127.0.0.1:50051".to_string()),
        member,
        certs: target.certs.clone(),
    })
}

fn open_offline(dir: &std::path::Path) -> Result<Store> {
    Store::open(dir, &StoreConfig::default()).with_context(|| {
        format!(
            "opening {} (offline administration needs the hub stopped)",
            dir.display()
        )
    })
}

/// One line per member.
pub fn print_member(m: &Member) {
    let roles: Vec<&str> = m.roles.iter().map(|r| r.name()).collect();
    let keys: Vec<String> = m.keys.iter().map(|k| k.key_id.to_string()).collect();
    println!(
        "{} ({}) roles={} status={:?} keys={}",
        m.id,
        if m.display_name.is_empty() {
            "-"
        } else {
            &m.display_name
        },
        roles.join(","),
        m.status,
        keys.join(",")
    );
}
