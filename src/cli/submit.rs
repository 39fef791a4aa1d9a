//! `coalition submit`: sign a hash list (split into sets) or a risk signal and submit it.

use super::Connection;
use crate::client::sign_new;
use crate::formats::{self, SignalFile};
use crate::pki::{CertDir, load_signing_key};
use crate::statement::{Body, HashSet, MAX_HASH_SET_ENTRIES, StatementId};
use anyhow::{Result, bail};
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
    /// Risk signal to submit (JSON, see docs/PROTOCOL.md).
    #[arg(long)]
    signal: Option<PathBuf>,
    /// Signing key (PKCS#8 PEM); default <certs>/members/<id>.sign.key.
    #[arg(long)]
    signing_key: Option<PathBuf>,
}

pub async fn run(args: SubmitArgs) -> Result<()> {
    let id = args.conn.member_id()?;
    let key = match &args.signing_key {
        Some(path) => load_signing_key(path)?,
        None => CertDir::new(&args.conn.certs).signing_key(&id)?,
    };
    let bodies: Vec<Body> = match (&args.hashes, &args.signal) {
        (Some(path), _) => {
            let entries = formats::read_hashes(path)?;
            if entries.is_empty() {
                bail!("{} holds no hashes", path.display());
            }
            entries
                .chunks(args.set_size as usize)
                .map(|chunk| {
                    Body::HashSet(HashSet {
                        description: args.description.clone(),
                        entries: chunk.to_vec(),
                    })
                })
                .collect()
        }
        (None, Some(path)) => vec![Body::RiskSignal(SignalFile::read(path)?)],
        (None, None) => bail!("give --hashes FILE or --signal FILE"),
    };
    let total_hashes: u64 = bodies
        .iter()
        .map(|b| match b {
            Body::HashSet(s) => s.entries.len() as u64,
            _ => 0,
        })
        .sum();
    let mut client = args.conn.connect().await?;
    let bar = ProgressBar::new(bodies.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} statements {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut new = 0;
    let mut present = 0;
    let mut last = None;
    for body in bodies {
        let envelope = sign_new(&id, &key, body);
        let response = client.submit(envelope).await?;
        let receipt = response.receipt.unwrap_or_default();
        if response.already_present {
            present += 1;
        } else {
            new += 1;
        }
        last = Some((receipt.seq, StatementId::from_slice(&receipt.statement_id)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some((seq, Some(sid))) = last {
        let what = if total_hashes > 0 {
            format!("{total_hashes} hashes")
        } else {
            "a risk signal".to_string()
        };
        println!(
            "submitted {new} statement(s) ({what}), {present} already present; last: seq {seq}, statement {sid}"
        );
    }
    Ok(())
}
