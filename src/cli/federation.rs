//! `coalition federation status`: where relaying from each peer hub stands, what each
//! witness last cosigned, and each origin's log as rebuilt here (docs/PROTOCOL.md §3.8,
//! §3.10), as an admin or auditor sees it.

use super::Connection;
use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Per peer: its cursor, lag in entries and seconds, last checkpoint seen, refusals; per
    /// witness: its last cosigned checkpoint and when; per origin: its entries rebuilt here
    /// and how many its checkpoints prove.
    Status {
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(command: FederationCommand) -> Result<()> {
    let FederationCommand::Status { conn } = command;
    let mut client = conn.connect().await?;
    let status = client
        .admin
        .get_federation_status(crate::pb::GetFederationStatusRequest {})
        .await
        .map_err(crate::client::ClientError::from)?
        .into_inner();
    let now = crate::store::now_ms();
    let text = crate::text::escape_control;
    if status.peers.is_empty() {
        println!("no peer: this hub relays nobody (coalition serve --peer)");
    }
    for p in &status.peers {
        let genesis = hex::encode(&p.genesis_id);
        let seen = if p.seen_at_ms == 0 {
            "never reached".to_owned()
        } else {
            format!(
                "checkpoint of {} entries seen {:.1} s ago",
                p.peer_size,
                (now - p.seen_at_ms).max(0) as f64 / 1000.0
            )
        };
        let lag = p.peer_size.saturating_sub(p.relayed_to);
        let origin = status.origins.iter().find(|o| o.genesis_id == p.genesis_id);
        let lag_seconds = match origin {
            Some(o) if lag > 0 => format!(
                ", the last relayed entry the peer received {:.1} s ago",
                (now - o.last_received_at_ms).max(0) as f64 / 1000.0
            ),
            _ => String::new(),
        };
        println!(
            "peer {} (genesis {}): cursor {}, lag {lag} entries{lag_seconds}; {seen}; {} statements relayed, {} refusals{}",
            text(&p.addr),
            &genesis[..16],
            p.relayed_to,
            p.statements,
            p.refusals,
            if p.refused.is_empty() {
                String::new()
            } else {
                format!("; STOPPED: {}", text(&p.refused))
            }
        );
    }
    for w in &status.witnesses {
        if w.cosigned_size == 0 {
            println!(
                "witness {}: cosigned none of the latest checkpoints",
                text(&w.name)
            );
        } else {
            println!(
                "witness {}: last cosigned the checkpoint of {} entries, {:.0} s ago",
                text(&w.name),
                w.cosigned_size,
                (now / 1000 - w.cosigned_at_s as i64).max(0)
            );
        }
    }
    for o in &status.origins {
        println!(
            "origin '{}' (genesis {}): {} entries rebuilt here, {} proven by its signed checkpoints",
            text(&o.hub_name),
            hex::encode(&o.genesis_id),
            o.entries,
            o.proven
        );
    }
    Ok(())
}
