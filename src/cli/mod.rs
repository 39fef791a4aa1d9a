//! The `coalition` command line: argument parsing and dispatch. Each command is a thin wrapper
//! over the library; errors are returned to `main`, which prints one line.

mod admin;
mod audit;
mod config;
mod federation;
mod hash;
mod keys;
mod lifecycle;
mod matching;
mod submit;
mod sync;
mod witness;

use crate::client::Client;
use crate::membership::MemberId;
use crate::pki::CertDir;
use crate::server::shutdown::Signals;
use crate::statement::StatementId;
use crate::store::{Store, StoreConfig};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Coalition Hub: share signed hash sets and risk signals without trusting the server.
#[derive(Debug, Parser)]
#[command(name = "coalition", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole flow on loopback: certificates, a hub, two members, submit, sync, verify.
    Quickstart {
        /// Where the development PKI lives (created if missing).
        #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
        certs: PathBuf,
    },
    /// Found a hub: write its genesis (hub name and key, first admins, quorum) as the first
    /// entry of a new data directory. Creates missing development certificates and keys.
    Init(InitArgs),
    /// On a member's own machine: make its signing key, TLS key and certificate request.
    Keygen(keys::KeygenArgs),
    /// Development PKI: CA, hub certificate, member certificates and signing keys; the CA's
    /// side of members' own keys (`sign-request`).
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Run a hub.
    // A flag given twice takes its last value: `--config` values come first.
    #[command(args_override_self = true)]
    Serve(ServeArgs),
    /// Run a transparency-log witness (C2SP tlog-witness) that cosigns a hub's checkpoints
    /// only if they are consistent with those it cosigned before.
    Witness {
        #[command(subcommand)]
        command: witness::WitnessCommand,
    },
    /// Federation between hubs: where relaying from each peer stands.
    Federation {
        #[command(subcommand)]
        command: federation::FederationCommand,
    },
    /// Coalition administration.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Sign and submit a hash set (CSV or JSON Lines) or a risk signal (JSON).
    Submit(submit::SubmitArgs),
    /// Stream statements into a local file, verifying every signature, resumable from a cursor.
    Sync(sync::SyncArgs),
    /// Retract one of your statements, or single entries of it, with a reason.
    Retract(lifecycle::RetractArgs),
    /// Give your opinion on another member's entry (confirmed, false-positive, disputed), or
    /// withdraw it.
    Opinion(lifecycle::OpinionArgs),
    /// A statement: who shared it, its entries' states and the retractions naming it, as your
    /// own sync state decides them.
    Show(lifecycle::ShowArgs),
    /// Hash image files (PDQ, MD5, SHA-1, SHA-256) and URLs (URL-MD5) into a hash list for
    /// `submit` or `match`.
    Hash(hash::HashArgs),
    /// Look hashes up: offline against a local index file, or online against the hub.
    Match(matching::MatchArgs),
    /// Independent auditing: export the log and checkpoints, verify them offline.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Show who the hub thinks you are.
    Whoami {
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create the CA, the hub certificate and the named members' certificates and signing keys
    /// (whatever is missing; existing files are kept).
    Init {
        /// Directory to write to.
        #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
        certs: PathBuf,
        /// Members to create certificates and signing keys for.
        #[arg(long = "member", value_name = "ID", default_values_t = ["admin".to_string(), "acme".to_string(), "globex".to_string()])]
        members: Vec<String>,
    },
    /// Revoke a member's TLS certificate: add it to revoked.txt and rewrite crl.pem, the CA's
    /// revocation list (a hub serving with `--crl` on it reloads it by itself).
    Revoke {
        /// The PKI directory (holding ca.pem, ca.key and members/<ID>.pem).
        #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
        certs: PathBuf,
        /// The member whose certificate to revoke.
        #[arg(long, value_name = "ID")]
        member: String,
    },
    /// Issue a member's TLS certificate from its certificate signing request (made with
    /// `coalition keygen`): checks the request's signature and subject; no private key involved.
    SignRequest(keys::SignRequestArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Data directory, founded with `coalition init`.
    #[arg(long, env = "COALITION_DATA", default_value = "data")]
    data: PathBuf,
    /// Save the matching index to <data>/matching-index.bin while the log is quiet and load
    /// it at start (checked against the log; a damaged or stale file is ignored): on or off.
    #[arg(long, env = "COALITION_MATCH_SNAPSHOT", default_value = "on")]
    match_snapshot: String,
    /// Address to listen on.
    #[arg(long, env = "COALITION_LISTEN", default_value = "127.0.0.1:50051")]
    listen: String,
    /// Development PKI directory holding ca.pem, hub.pem, hub.key and hub.sign.key (the hub
    /// key of the genesis, which signs checkpoints).
    #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
    certs: PathBuf,
    /// Storage cache budget in MiB.
    #[arg(long, default_value_t = 128)]
    cache_mib: u64,
    /// Statement ids kept in memory before they are written as a sorted run of the id index
    /// (tests use a small value to exercise run writes and merges).
    #[arg(long, default_value_t = crate::store::ID_MEMTABLE, hide = true)]
    id_memtable: usize,
    /// Certificate revocation list (PEM, issued by the coalition CA; e.g. certs/crl.pem from
    /// `coalition pki revoke`). Revoked client certificates are refused; the file is re-read
    /// when it changes.
    #[arg(long, env = "COALITION_CRL", value_name = "FILE")]
    crl: Option<PathBuf>,
    /// The hub's checkpoint signing key (PKCS#8 PEM). Default: <certs>/hub.sign.key. It must
    /// be the key the log names as current (the genesis key until a rotation).
    #[arg(long, env = "COALITION_HUB_KEY", value_name = "FILE")]
    hub_key: Option<PathBuf>,
    /// The key a hub key rotation not yet logged names (`coalition admin settings
    /// rotate-hub-key`): the hub switches to it when the rotation is logged, without a restart.
    #[arg(long, value_name = "FILE")]
    next_hub_key: Option<PathBuf>,

    /// How long the CRL may be past its nextUpdate before the hub refuses every call (fails
    /// closed) until a current CRL is installed; e.g. `12h`, `3d`. Warned about from the
    /// first second past nextUpdate.
    #[arg(long, default_value = "1d", value_name = "DURATION", value_parser = humantime::parse_duration)]
    crl_grace: std::time::Duration,
    /// Publish a signed checkpoint once the log has grown by this many entries.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    checkpoint_entries: u64,
    /// ... or once it has grown at all and this many milliseconds have passed.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    checkpoint_ms: u64,
    /// On SIGTERM or SIGINT, how long to drain (end sync streams, answer the calls in flight,
    /// close the store) before exiting anyway with code 1. A second signal exits at once.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    shutdown_grace_ms: u64,
    /// Operations listener (plain HTTP, no client certificate: keep it on loopback):
    /// GET /metrics (Prometheus) and GET /healthz. `off` disables it and the metrics.
    #[arg(long, env = "COALITION_OPS_LISTEN", default_value = crate::server::DEFAULT_OPS_LISTEN, value_name = "ADDR|off")]
    ops_listen: String,
    /// Serve the TAXII 2.1 read API (HTTPS with the hub's mutual TLS; the hash sets and risk
    /// signals as STIX 2.1 indicators, docs/PROTOCOL.md §8) on ADDR, e.g. 0.0.0.0:9443.
    /// `off` (the default): not served.
    #[arg(
        long,
        env = "COALITION_TAXII_LISTEN",
        default_value = "off",
        value_name = "ADDR|off"
    )]
    taxii_listen: String,
    /// Keep access-log records (who synced or matched how much, when) this many days.
    #[arg(long, default_value_t = 90, value_name = "DAYS")]
    access_log_days: u64,
    /// Keep at most this many access-log records (the oldest go first).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    access_log_max_records: u64,
    /// Log format on stderr: `text` (colours only on a terminal) or `json` (one object a line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve as a read-only mirror of the hub at ADDR: follow its log (every entry verified
    /// and proven in its signed checkpoints before it is written), copy its checkpoints, and
    /// serve Sync, Match and the audit RPCs to its members; every write is refused. Needs
    /// --upstream-as, and --genesis for an empty data directory. No hub key is used.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["hub_key", "next_hub_key", "catch_up_from"])]
    mirror_of: Option<String>,
    /// Disaster recovery: before serving, copy the entries and checkpoints this hub's data
    /// directory is missing (a backup restored) from a mirror of its own log at ADDR, each
    /// verified and proven in this hub's own signed checkpoints. Fails to start if ADDR
    /// cannot be reached. Needs --upstream-as.
    #[arg(long, value_name = "ADDR")]
    catch_up_from: Option<String>,
    /// The member (holding the `auditor` role on the upstream hub) to call --mirror-of or
    /// --catch-up-from as: its certificate is <certs>/members/<ID>.pem and .key.
    #[arg(long, value_name = "ID")]
    upstream_as: Option<String>,
    /// The genesis statement id (64 hex) of the hub an empty mirror follows; checked against
    /// the data directory's genesis otherwise.
    #[arg(long, value_name = "ID", requires = "mirror_of")]
    genesis: Option<String>,
    /// Relay the statements of a peer hub (repeatable; docs/PROTOCOL.md §3.10):
    /// ADDR,GENESIS,CERTS,MEMBER — its address, its genesis id (64 hex; a trusted origin of
    /// this hub's settings), the certificate directory of its coalition (its `ca.pem`, and
    /// `members/MEMBER.pem` and `.key`: this hub's identity there, holding the `peer` role).
    #[arg(
        long = "peer",
        value_name = "ADDR,GENESIS,CERTS,MEMBER",
        conflicts_with = "mirror_of"
    )]
    peers: Vec<String>,
    /// A TOML file setting any of these flags (keys = flag names without `--`, e.g.
    /// `listen = "0.0.0.0:50051"`); flags on the command line win; unknown keys are refused.
    #[arg(long, env = "COALITION_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Parses `--peer ADDR,GENESIS,CERTS,MEMBER`.
fn parse_peer(flag: &str) -> anyhow::Result<crate::federation::Peer> {
    let parts: Vec<&str> = flag.split(',').collect();
    let [addr, genesis, certs, member] = parts[..] else {
        anyhow::bail!(
            "--peer {flag}: expected ADDR,GENESIS,CERTS,MEMBER (address, genesis id, certificate directory, member id there)"
        );
    };
    let genesis = crate::statement::StatementId::from_hex(genesis).ok_or_else(|| {
        anyhow::anyhow!("--peer {flag}: '{genesis}' is not a genesis id (64 hex characters)")
    })?;
    let tls = crate::pki::CertDir::new(std::path::Path::new(certs))
        .member_tls(&MemberId::parse(member)?)
        .with_context(|| format!("--peer {flag}"))?;
    Ok(crate::federation::Peer {
        addr: addr.to_owned(),
        tls,
        genesis,
    })
}

/// How the log lines on stderr are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// Data directory to create (must not hold a log yet).
    #[arg(long, env = "COALITION_DATA", default_value = "data")]
    data: PathBuf,
    /// Development PKI directory (the hub key is hub.sign.key; admins' keys members/<id>.*).
    #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
    certs: PathBuf,
    /// The hub's name: the origin line of its checkpoints.
    #[arg(long, default_value = "hub.coalition.local")]
    name: String,
    /// First admins (repeatable); the first one issues the genesis.
    #[arg(long = "admin", value_name = "ID", default_values_t = ["admin".to_string()])]
    admins: Vec<String>,
    /// Admin signatures a membership change needs (1..=number of admins).
    #[arg(long, default_value_t = 1)]
    quorum: u32,
}

/// How a client command reaches the hub and who it is.
#[derive(Debug, Args)]
pub struct Connection {
    /// Hub address.
    #[arg(long, env = "COALITION_HUB", default_value = "127.0.0.1:50051")]
    pub hub: String,
    /// Member id to act as (selects certs/members/<id>.pem, .key and .sign.key).
    #[arg(long = "as", env = "COALITION_MEMBER", value_name = "ID")]
    pub member: String,
    /// Development PKI directory.
    #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
    pub certs: PathBuf,
}

impl Connection {
    /// The member id, validated.
    pub fn member_id(&self) -> Result<MemberId> {
        Ok(MemberId::parse(&self.member)?)
    }

    /// Connects with the member's certificate.
    pub async fn connect(&self) -> Result<Client> {
        let id = self.member_id()?;
        let tls = CertDir::new(&self.certs).member_tls(&id)?;
        Ok(Client::connect(&self.hub, &tls).await?)
    }
}

impl Cli {
    /// Parses `args` (the program name first), then, for `serve --config FILE`, again with the
    /// file's settings placed before the command line's (see `config.rs`). A usage error is
    /// clap's; a config file that cannot be used is the second kind.
    pub fn parse_with_config(
        args: Vec<std::ffi::OsString>,
    ) -> std::result::Result<Cli, ParseError> {
        let cli = Cli::try_parse_from(&args).map_err(ParseError::Usage)?;
        let Command::Serve(ServeArgs {
            config: Some(file), ..
        }) = &cli.command
        else {
            return Ok(cli);
        };
        use clap::CommandFactory;
        let top = Cli::command();
        let serve = top
            .find_subcommand("serve")
            .ok_or_else(|| ParseError::Config(anyhow::anyhow!("no serve command")))?;
        let from_file = config::read(serve, file).map_err(ParseError::Config)?;
        let Some(at) = args.iter().position(|a| a == "serve") else {
            return Ok(cli);
        };
        let mut merged = args[..=at].to_vec();
        merged.extend(from_file);
        merged.extend_from_slice(&args[at + 1..]);
        Cli::try_parse_from(merged).map_err(|e| {
            ParseError::Config(anyhow::anyhow!(
                "{}: {}",
                file.display(),
                e.render().to_string().lines().next().unwrap_or_default()
            ))
        })
    }

    /// The log format asked for (`serve --log-format`; text otherwise).
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Command::Serve(args) => args.log_format,
            _ => LogFormat::Text,
        }
    }

    /// The log filter used when `RUST_LOG` is unset: the server logs its work, other commands
    /// only warnings (their output is the answer).
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve(_) | Command::Witness { .. } => "warn,coalition_hub=info",
            _ => "warn",
        }
    }

    /// Runs the parsed command.
    pub async fn run(self) -> Result<()> {
        match self.command {
            Command::Quickstart { certs } => crate::quickstart::run(&certs).await,
            Command::Pki {
                command: PkiCommand::Init { certs, members },
            } => {
                let ids = members
                    .iter()
                    .map(|m| MemberId::parse(m))
                    .collect::<Result<Vec<_>, _>>()?;
                let created = CertDir::new(&certs).init(&ids)?;
                if created.files.is_empty() {
                    println!("{}: everything already present", certs.display());
                }
                for f in created.files {
                    println!("created {}", f.display());
                }
                Ok(())
            }
            Command::Init(args) => init(args).await,
            Command::Pki {
                command: PkiCommand::Revoke { certs, member },
            } => {
                let id = MemberId::parse(&member)?;
                let r = CertDir::new(&certs).revoke(&id)?;
                let what = if r.newly_revoked {
                    "revoked"
                } else {
                    "already revoked"
                };
                println!(
                    "{what} {} certificate serial {}; wrote {} (CRL number {}, {} revoked)",
                    r.member,
                    r.serial,
                    r.crl.display(),
                    r.crl_number,
                    r.revoked_total
                );
                Ok(())
            }
            Command::Keygen(args) => keys::keygen(args),
            Command::Pki {
                command: PkiCommand::SignRequest(args),
            } => keys::sign_request(args),
            Command::Serve(args) => serve(args).await,
            Command::Admin { command } => admin::run(command).await,
            Command::Witness { command } => witness::run(command).await,
            Command::Federation { command } => federation::run(command).await,
            Command::Audit { command } => audit::run(command).await,
            Command::Submit(args) => submit::run(args).await,
            Command::Sync(args) => sync::run(args).await,
            Command::Retract(args) => lifecycle::retract(args).await,
            Command::Opinion(args) => lifecycle::opinion(args).await,
            Command::Show(args) => lifecycle::show(args).await,
            Command::Hash(args) => hash::run(args),
            Command::Match(args) => matching::run(args).await,
            Command::Whoami { conn } => {
                let mut client = conn.connect().await?;
                let me = client
                    .hub
                    .who_am_i(crate::pb::WhoAmIRequest {})
                    .await
                    .map_err(crate::client::ClientError::from)?
                    .into_inner();
                let member = crate::membership::Member::from_wire(me)?;
                admin::print_member(&member);
                Ok(())
            }
        }
    }
}

async fn init(args: InitArgs) -> Result<()> {
    let admins = args
        .admins
        .iter()
        .map(|a| Ok((MemberId::parse(a)?, a.clone())))
        .collect::<Result<Vec<_>>>()?;
    let certs = CertDir::new(&args.certs);
    let ids: Vec<MemberId> = admins.iter().map(|(id, _)| id.clone()).collect();
    for f in certs.init(&ids)?.files {
        println!("created {}", f.display());
    }
    let store = Store::open(&args.data, &StoreConfig::default())
        .with_context(|| format!("opening data directory {}", args.data.display()))?;
    if store.log_size() > 0 {
        anyhow::bail!(
            "{} already holds a log of {} entries; a hub is founded once (use another --data)",
            args.data.display(),
            store.log_size()
        );
    }
    let appended =
        crate::governance::found_from_certs(&store, &certs, &args.name, &admins, args.quorum)
            .await?;
    println!(
        "founded hub '{}' in {}: genesis {} (entry {}), admins {}, quorum {}; hub key {}",
        args.name,
        args.data.display(),
        appended.receipt.statement_id,
        appended.receipt.seq,
        args.admins.join(","),
        args.quorum,
        certs.hub_signing_key_path().display()
    );
    Ok(())
}

/// A `--genesis ID` value: a 64-hex statement id.
pub(crate) fn parse_genesis(g: &str) -> Result<StatementId> {
    StatementId::from_hex(g)
        .with_context(|| format!("--genesis '{g}' is not a 64-hex statement id"))
}

/// Copies what `store` is missing from `upstream` before serving: the first copy of a new
/// mirror (an unreachable upstream is retried for up to a minute) or a recovery (`recovery`:
/// the upstream must be reached at once, since the hub must not serve an old copy).
async fn catch_up(
    store: &Store,
    upstream: crate::federation::Upstream,
    recovery: bool,
) -> Result<()> {
    use crate::federation::{FollowError, Follower, Round};
    let addr = upstream.addr.clone();
    let mut follower = Follower::new(store.clone(), upstream).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match follower.catch_up().await {
            Ok(Round::Waiting) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
            Ok(_) => break,
            Err(FollowError::Unavailable { reason, .. })
                if !recovery && std::time::Instant::now() < deadline =>
            {
                tracing::warn!(%addr, "waiting for the upstream: {reason}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(%addr, entries = store.log_size(), "caught up with the upstream");
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    // A process-wide choice, so made here at the process edge (see its module).
    crate::server::allocator::configure();
    let certs = CertDir::new(&args.certs);
    let tls = certs.hub_tls()?;
    let config = StoreConfig {
        cache_bytes: args.cache_mib * 1024 * 1024,
        id_memtable: args.id_memtable,
    };
    let store = Store::open(&args.data, &config)
        .with_context(|| format!("opening data directory {}", args.data.display()))?;
    let upstream = |addr: &String| -> Result<crate::federation::Upstream> {
        let id = args.upstream_as.as_deref().with_context(|| {
            format!("--upstream-as ID: the member (auditor role) to call {addr} as")
        })?;
        let genesis = args.genesis.as_deref().map(parse_genesis).transpose()?;
        Ok(crate::federation::Upstream {
            addr: addr.clone(),
            tls: certs.member_tls(&MemberId::parse(id)?)?,
            genesis,
        })
    };
    if args.upstream_as.is_some() && args.mirror_of.is_none() && args.catch_up_from.is_none() {
        anyhow::bail!(
            "--upstream-as names who to call an upstream as: use it with --mirror-of or --catch-up-from"
        );
    }
    if let Some(addr) = args.mirror_of.as_ref().or(args.catch_up_from.as_ref()) {
        // A new mirror (nothing to serve yet) or a recovery: copy before serving.
        let initial = store.registry().coalition().is_none() || args.catch_up_from.is_some();
        if initial {
            catch_up(&store, upstream(addr)?, args.catch_up_from.is_some()).await?;
        }
    }
    if store.registry().coalition().is_none() {
        anyhow::bail!(
            "{} holds no hub: found one first with `coalition init --data {0}`",
            args.data.display()
        );
    }
    let options = {
        let mut o = match &args.mirror_of {
            Some(addr) => crate::server::ServeOptions::mirror(Some(upstream(addr)?)),
            None => {
                let hub_key = match &args.hub_key {
                    Some(file) => crate::pki::load_signing_key(file)?,
                    None => certs.hub_signing_key()?,
                };
                let next = args
                    .next_hub_key
                    .as_deref()
                    .map(crate::pki::load_signing_key)
                    .transpose()?;
                crate::server::ServeOptions::for_store_rotating(&store, hub_key, next)?
            }
        };
        o.peers = args
            .peers
            .iter()
            .map(|p| parse_peer(p))
            .collect::<anyhow::Result<_>>()?;
        o.crl = args.crl.clone();
        o.crl_grace = args.crl_grace;
        o.checkpoints = crate::server::CheckpointPolicy {
            max_entries: args.checkpoint_entries.max(1),
            max_delay: std::time::Duration::from_millis(args.checkpoint_ms.max(1)),
        };
        o.shutdown_grace = std::time::Duration::from_millis(args.shutdown_grace_ms);
        o.ops_listen = match args.ops_listen.as_str() {
            "off" => None,
            addr => Some(addr.parse().with_context(|| {
                format!(
                    "--ops-listen {addr}: expected IP:PORT (e.g. {}) or off",
                    crate::server::DEFAULT_OPS_LISTEN
                )
            })?),
        };
        o.taxii_listen = match args.taxii_listen.as_str() {
            "off" => None,
            addr => Some(addr.parse().with_context(|| {
                format!("--taxii-listen {addr}: expected IP:PORT (e.g. 0.0.0.0:9443) or off")
            })?),
        };
        o.match_snapshot = match args.match_snapshot.as_str() {
            "off" => None,
            "on" => Some(args.data.join(crate::server::MATCH_SNAPSHOT_FILE)),
            other => anyhow::bail!("--match-snapshot {other}: expected on or off"),
        };
        o.access_retention = crate::store::AccessRetention {
            max_age: std::time::Duration::from_secs(args.access_log_days.saturating_mul(24 * 3600)),
            max_records: args.access_log_max_records,
        };
        o
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    match (&options.checkpoint_signer, &args.mirror_of) {
        (Some(signer), _) => {
            tracing::info!(%addr, data = %args.data.display(), entries = store.log_size(), checkpoint_key = %signer.verifier_key(), "hub serving")
        }
        (None, upstream) => {
            tracing::info!(%addr, data = %args.data.display(), entries = store.log_size(), mirror_of = ?upstream, "read-only mirror serving")
        }
    }
    if let Some(crl) = &args.crl {
        tracing::info!(crl = %crl.display(), "refusing certificates that CRL revokes");
    }
    // Before the address is printed: from then on SIGTERM and SIGINT drain the hub instead of
    // killing it.
    let mut signals =
        Signals::install().context("listening for SIGTERM and SIGINT (to shut down cleanly)")?;
    // Scripts (and the durability test) read this line to learn the port.
    println!("listening on {addr}");
    let (begin, begun) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let first = signals.recv().await;
        tracing::info!(signal = %first, "stopping: a second signal exits at once");
        let _ = begin.send(());
        let second = signals.recv().await;
        tracing::warn!(signal = %second, "second signal: exiting now, without draining (every acknowledged statement is on disk)");
        exit_now(second.exit_code());
    });
    let served = crate::server::serve(listener, store, &tls, options, async {
        let _ = begun.await;
    })
    .await;
    match served {
        Ok(()) => Ok(()),
        Err(e @ crate::server::ServerError::ShutdownTimeout(_)) => {
            tracing::warn!("{e}; exiting anyway");
            exit_now(1)
        }
        Err(e) => Err(e.into()),
    }
}

/// Why the command line could not be used.
#[derive(Debug)]
pub enum ParseError {
    /// A usage error (or `--help`, `--version`).
    Usage(clap::Error),
    /// `serve --config FILE` names a file that cannot be read or holds unknown keys.
    Config(anyhow::Error),
}

/// Ends the process now, without running destructors or waiting for the runtime: what is
/// still running overran the shutdown (or a second signal said not to wait), and joining it
/// could take any time. Safe for the data: every acknowledged statement was flushed before its
/// answer, and the store recovers an interrupted write at the next start, as after SIGKILL.
fn exit_now(code: u8) -> ! {
    std::process::exit(i32::from(code))
}

/// An error chain on one line: each cause not already quoted by an outer one, joined by ": ".
/// Control characters (a newline in a quoted value included) are escaped by
/// [`crate::text::escape_control`], so the line cannot be split or forged.
pub fn one_line(e: &anyhow::Error) -> String {
    if e.chain().any(crate::client::is_certificate_revoked) {
        return crate::client::REVOKED_MESSAGE.to_owned();
    }
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    crate::text::escape_control(&parts.join(": ")).into_owned()
}

/// Reads the text file `path`, refusing one longer than `max` bytes before reading more;
/// `what` names it in errors ("the config file").
pub fn read_text_file(path: &std::path::Path, max: u64, what: &str) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .with_context(|| format!("reading {what} {}", path.display()))?
        .take(max + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if text.len() as u64 > max {
        anyhow::bail!("{}: {what} is at most {max} bytes", path.display());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
