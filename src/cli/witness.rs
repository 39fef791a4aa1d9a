//! `coalition witness`: make a witness key (`init`), print it (`key`), and run a C2SP
//! tlog-witness (`run`) that cosigns only checkpoints consistent with those it cosigned before.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::log::VerifierKey;
use crate::log::cosignature::{Cosigner, CosignerKey};
use crate::witness::cosigning::Witness;
use crate::witness::store::WitnessStore;
use crate::witness::{TrustedLogs, origin_hash};

/// The witness's signing key, in its data directory.
const KEY_FILE: &str = "witness.key";
/// The witness's verifier key (name, key ID, public key), in its data directory.
const VKEY_FILE: &str = "witness.vkey";

#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Make the witness's key in DIR and print its verifier key (give it to the coalition's
    /// admins for the witness policy).
    Init(InitArgs),
    /// Print the witness's verifier key.
    Key {
        /// The witness's data directory.
        #[arg(long, env = "COALITION_WITNESS_DATA")]
        data: PathBuf,
    },
    /// Run the witness: POST /add-checkpoint and GET /<origin hash>/checkpoint over HTTP.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The witness's data directory (created; must not hold a key yet).
    #[arg(long, env = "COALITION_WITNESS_DATA")]
    data: PathBuf,
    /// The witness's name, a schema-less URL such as `witness.example.org/w1`.
    #[arg(long)]
    name: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The witness's data directory (made with `coalition witness init`).
    #[arg(long, env = "COALITION_WITNESS_DATA")]
    data: PathBuf,
    /// Address to listen on (plain HTTP, as c2sp.org/tlog-witness; put TLS in front if wanted).
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: String,
    /// A log to witness: its checkpoint verifier key `<origin>+<key id>+<base64 key>` (a hub
    /// logs it at start-up as `checkpoint_key`). Repeat for more logs, or for a log's next key.
    #[arg(long = "log", required = true)]
    logs: Vec<String>,
}

pub async fn run(command: WitnessCommand) -> Result<()> {
    match command {
        WitnessCommand::Init(args) => init(&args),
        WitnessCommand::Key { data } => {
            println!("{}", load(&data)?.public());
            Ok(())
        }
        WitnessCommand::Run(args) => serve(args).await,
    }
}

fn init(args: &InitArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    let key_path = args.data.join(KEY_FILE);
    if key_path.exists() {
        bail!(
            "{} exists: this directory already holds a witness key (print it with `coalition witness key --data {}`)",
            key_path.display(),
            args.data.display()
        );
    }
    // Check the name before writing anything.
    let probe = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    Cosigner::new(&args.name, probe).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let key = crate::pki::create_signing_key_file(&key_path)?;
    let cosigner = Cosigner::new(&args.name, key).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    std::fs::write(
        args.data.join(VKEY_FILE),
        format!("{}\n", cosigner.public()),
    )
    .with_context(|| format!("writing {}", args.data.join(VKEY_FILE).display()))?;
    println!("created {}", key_path.display());
    println!("witness key: {}", cosigner.public());
    Ok(())
}

/// The witness's key from its data directory, checked against its verifier key file.
fn load(data: &Path) -> Result<Cosigner> {
    let vkey_path = data.join(VKEY_FILE);
    let text = std::fs::read_to_string(&vkey_path).with_context(|| {
        format!(
            "reading {} (make the witness key with `coalition witness init --data {} --name NAME`)",
            vkey_path.display(),
            data.display()
        )
    })?;
    let public =
        CosignerKey::parse(text.trim()).with_context(|| vkey_path.display().to_string())?;
    let key = crate::pki::load_signing_key(&data.join(KEY_FILE))?;
    let cosigner = Cosigner::new(public.name(), key).map_err(|e| anyhow::anyhow!("{e}"))?;
    if cosigner.public() != &public {
        bail!(
            "{} does not hold the key that {} names: restore the pair from a backup",
            data.join(KEY_FILE).display(),
            vkey_path.display()
        );
    }
    Ok(cosigner)
}

async fn serve(args: RunArgs) -> Result<()> {
    let cosigner = load(&args.data)?;
    let mut logs = TrustedLogs::default();
    for text in &args.logs {
        logs.add(VerifierKey::parse(text).with_context(|| format!("--log {text}"))?);
    }
    let store = WitnessStore::open(&args.data)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let addr = listener.local_addr()?;
    let witness = Arc::new(Witness::new(cosigner, logs, store));
    println!("witness key: {}", witness.key());
    for origin in witness.logs().origins() {
        println!(
            "witnessing {origin} (monitoring path /{}/checkpoint)",
            origin_hash(origin)
        );
    }
    // Tests and scripts read the port from this line.
    println!("witness listening on {addr}");
    tracing::info!(%addr, key = %witness.key(), "witness listening");
    crate::witness::http::serve(listener, witness, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
