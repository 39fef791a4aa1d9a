//! TAXII 2.1 read benchmark: a `coalition serve` process with `--taxii-listen` holding
//! `TAXII_BENCH_SETS` hash sets of 1,000 sha256 hashes (default 100: 100,000 indicators), paged
//! through whole over HTTPS with mutual TLS (one kept-alive HTTP/1.1 connection, `next` from
//! page to page, every page parsed as JSON), at the maximum page size and at the default one.
//! Reports objects/s, the median of 3 runs.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench taxii`
//! (`TAXII_BENCH_SETS=10`: a smoke run of 10,000 indicators).

#[path = "support/founding.rs"]
mod founding;
#[path = "support/hub_process.rs"]
mod hub_process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use coalition_hub::client::sign_new;
use coalition_hub::membership::MemberId;
use coalition_hub::pki::CertDir;
use coalition_hub::statement::ParsedEnvelope;
use coalition_hub::taxii::{Collection, MAX_PAGE_OBJECTS};
use http_body_util::{BodyExt, Empty};
use hub_process::Hub;
use hyper_util::rt::TokioIo;
use rayon::prelude::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

const RUNS: usize = 3;
const SET_SIZE: usize = 1_000;

fn main() -> Result<()> {
    let sets: usize = match std::env::var("TAXII_BENCH_SETS") {
        Ok(v) => v.parse().with_context(|| format!("TAXII_BENCH_SETS={v}"))?,
        Err(_) => 100,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run(sets))
}

async fn run(sets: usize) -> Result<()> {
    let root = tempfile::tempdir()?;
    let certs = CertDir::new(root.path().join("certs"));
    let (admin, submitter, reader) = (
        MemberId::parse("admin")?,
        MemberId::parse("bench-submitter")?,
        MemberId::parse("bench-reader")?,
    );
    certs.init(&[admin.clone(), submitter.clone(), reader.clone()])?;
    let data = root.path().join("data");
    let started = Instant::now();
    let genesis = {
        let (store, _) = founding::found(
            &data,
            &certs,
            "bench.coalition.local",
            &admin,
            &[&submitter, &reader],
        )
        .await?;
        let key = certs.signing_key(&submitter)?;
        for chunk in (0..sets).collect::<Vec<_>>().chunks(16) {
            let verified = chunk
                .par_iter()
                .map(|&set| {
                    let body = founding::sha256_set(set, SET_SIZE, format!("bench set {set}"));
                    let parsed = ParsedEnvelope::parse(sign_new(&submitter, &key, body))?;
                    let (verified, _) = store.registry().verify(parsed)?;
                    Ok::<_, anyhow::Error>(verified)
                })
                .collect::<Result<Vec<_>>>()?;
            for v in verified {
                store.append(v).await?;
            }
        }
        store.registry().coalition().context("founded")?.genesis_id
    };
    let objects = sets * SET_SIZE;
    println!("Coalition Hub TAXII 2.1 read benchmark");
    println!(
        "machine: {} cores; hub: `coalition serve --taxii-listen` process on 127.0.0.1, HTTPS + mutual TLS, HTTP/1.1 kept alive",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "log: {sets} hash sets of {SET_SIZE} sha256 hashes = {objects} indicators ({:.1} s to sign and store)\n",
        started.elapsed().as_secs_f64()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let taxii: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let hub = Hub::start_with(
        certs.root(),
        &data,
        &root.path().join("hub.log"),
        128,
        &["--ops-listen", "off", "--taxii-listen", &taxii.to_string()],
    )?;
    let client = Taxii::new(taxii, &certs, &reader)?;
    let path = format!(
        "/coalition/collections/{}/objects/",
        Collection::HashSets.id(&genesis)
    );
    for limit in [MAX_PAGE_OBJECTS, coalition_hub::taxii::DEFAULT_PAGE_OBJECTS] {
        let mut times = Vec::new();
        for run in 0..RUNS {
            let (took, indicators, pages) = client.page_through(&path, limit).await?;
            if indicators != objects {
                bail!("read {indicators} indicators, expected {objects}");
            }
            println!(
                "  limit={limit} run {}: {indicators} indicators in {pages} pages, {:.2} s = {:.0} objects/s",
                run + 1,
                took.as_secs_f64(),
                indicators as f64 / took.as_secs_f64()
            );
            times.push(took);
        }
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "limit={limit}: median {:.0} objects/s ({objects} indicators in {:.2} s)\n",
            objects as f64 / median.as_secs_f64(),
            median.as_secs_f64()
        );
    }
    hub.stop()?;
    Ok(())
}

/// One kept-alive mutual-TLS connection.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

/// A member's TAXII client.
struct Taxii {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

impl Taxii {
    fn new(addr: SocketAddr, certs: &CertDir, member: &MemberId) -> Result<Taxii> {
        let tls = certs.member_tls(member)?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&tls.ca_pem) {
            roots.add(ca?)?;
        }
        let chain = CertificateDer::pem_slice_iter(&tls.cert_pem).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
        Ok(Taxii {
            addr,
            config: Arc::new(config),
        })
    }

    async fn connect(&self) -> Result<Conn> {
        // The hub binds its TAXII listener once serving starts, just after its gRPC line.
        let mut tries = 0;
        let tcp = loop {
            match tokio::net::TcpStream::connect(self.addr).await {
                Ok(tcp) => break tcp,
                Err(_) if tries < 200 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    async fn get(&self, conn: &mut Conn, path: &str) -> Result<serde_json::Value> {
        let request = http::Request::get(path)
            .header(http::header::HOST, "localhost")
            .header(http::header::ACCEPT, coalition_hub::taxii::TAXII_MEDIA_TYPE)
            .body(Empty::<Bytes>::new())?;
        let response = tokio::time::timeout(Duration::from_secs(60), async {
            conn.sender.ready().await?;
            conn.sender.send_request(request).await
        })
        .await??;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{path}: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Every object of `path`, `limit` a page: the time, the indicators and the pages.
    async fn page_through(&self, path: &str, limit: usize) -> Result<(Duration, usize, usize)> {
        let mut conn = self.connect().await?;
        let started = Instant::now();
        let (mut indicators, mut pages) = (0, 0);
        let mut next: Option<String> = None;
        loop {
            let url = match &next {
                Some(n) => format!("{path}?limit={limit}&next={n}"),
                None => format!("{path}?limit={limit}"),
            };
            let page = self.get(&mut conn, &url).await?;
            pages += 1;
            indicators += page["objects"]
                .as_array()
                .map_or(0, |o| o.iter().filter(|o| o["type"] == "indicator").count());
            if page["more"] != true {
                return Ok((started.elapsed(), indicators, pages));
            }
            next = Some(
                page["next"]
                    .as_str()
                    .context("more without next")?
                    .to_owned(),
            );
            if pages > 100_000 {
                bail!("too many pages");
            }
        }
    }
}
