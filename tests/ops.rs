//! Operations with the real server: honest health (real faults in the data directory make the
//! services that need the broken part NOT_SERVING, with the reason on `/healthz`), health and
//! reflection for active members only (v1 and v1alpha), the operations listener's metrics, the
//! access log (admins and auditors read it, members do not; counts only), `serve --config` and
//! JSON logs.

use crate::common;

use coalition_hub::client::Client;
use coalition_hub::governance;
use coalition_hub::membership::Action;
use coalition_hub::pb;
use coalition_hub::pki::TlsConfig;
use coalition_hub::store::{Store, StoreConfig};
use common::founded::{Founded, LoggedHub, PATIENCE};
use common::{TestHub, id, sync_all};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

impl Founded {
    /// Logs `envelopes` offline; returns their (seq, statement id).
    async fn log(&self, envelopes: &[pb::Envelope]) -> Vec<(u64, [u8; 32])> {
        let store = Store::open(&self.data, &StoreConfig::default()).expect("store");
        let mut logged = Vec::new();
        for e in envelopes {
            let a = governance::append_offline(&store, e.clone())
                .await
                .expect("append");
            logged.push((a.receipt.seq, a.receipt.statement_id.0));
        }
        drop(store);
        logged
    }
}

/// `coalition serve` with the operations listener on a free port (`LoggedHub`), and that
/// listener's address, read from the log line that announces it.
struct Serve {
    hub: LoggedHub,
    ops: String,
}

impl std::ops::Deref for Serve {
    type Target = LoggedHub;
    fn deref(&self) -> &LoggedHub {
        &self.hub
    }
}

impl Serve {
    fn start(f: &Founded, extra: &[&str]) -> Serve {
        let hub = LoggedHub::start(f, extra);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = hub.log();
            if let Some(at) = log.find("http://127.0.0.1:") {
                let rest = &log[at + "http://".len()..];
                let ops = rest[..rest.find('/').expect("path")].to_owned();
                return Serve { hub, ops };
            }
            assert!(Instant::now() < deadline, "no operations address in {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` on the operations listener: status code and body.
    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.ops, path)
    }

    /// Waits until `/healthz` answers `code`; returns the body.
    fn wait_for_health(&self, code: u16) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (got, body) = self.get("/healthz");
            if got == code {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz stayed {got} {body:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A plain HTTP/1.1 GET on loopback.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect ops");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// A channel for stock gRPC clients (health, reflection) with `tls`'s certificate.
async fn channel(addr: &str, tls: &TlsConfig) -> tonic::transport::Channel {
    coalition_hub::server::install_crypto_provider();
    let config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
        .domain_name("localhost")
        .identity(tonic::transport::Identity::from_pem(
            &tls.cert_pem,
            &tls.key_pem,
        ));
    tonic::transport::Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(config)
        .expect("tls")
        .connect()
        .await
        .expect("connect")
}

async fn health(channel: &tonic::transport::Channel, service: &str) -> Result<i32, tonic::Status> {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
}

/// Waits until `service`'s health is `want`.
async fn wait_for_status(channel: &tonic::transport::Channel, service: &str, want: ServingStatus) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = health(channel, service).await.expect("health");
        if got == want as i32 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} stayed {got}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const HUB: &str = "coalition.v1.Hub";
const ADMIN: &str = "coalition.v1.Admin";
const AUDIT: &str = "coalition.v1.Audit";

#[tokio::test]
async fn a_damaged_log_entry_stops_the_indexer_and_the_hub_says_so() {
    let f = Founded::new("ops.test").await;
    let logged = f.log(&[f.hash_set(1, 5), f.hash_set(2, 5)]).await;
    // The first set's entry no longer decodes (the last entry must stay readable to open).
    common::rewrite_stored_record(&f.data, logged[0].0, |record| record.fill(0xff));
    let hub = Serve::start(&f, &[]);
    let body = hub.wait_for_health(503);
    assert!(
        body.starts_with(
            "not serving: indexer down: the matching index stopped: stored record entry 1 is corrupt"
        ),
        "{body}"
    );
    assert!(
        hub.log().contains("health: indexer is down"),
        "{}",
        hub.log()
    );
    let ch = channel(&hub.addr, &f.tls()).await;
    wait_for_status(&ch, HUB, ServingStatus::NotServing).await;
    wait_for_status(&ch, "", ServingStatus::NotServing).await;
    // What does not need the index goes on.
    assert_eq!(
        health(&ch, AUDIT).await.expect("audit"),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        health(&ch, ADMIN).await.expect("admin"),
        ServingStatus::Serving as i32
    );
    let (_, metrics) = hub.get("/metrics");
    assert!(
        metrics.contains("coalition_component_up{component=\"indexer\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("coalition_serving 0"), "{metrics}");
}

#[tokio::test]
async fn a_store_that_cannot_write_makes_the_hub_not_serving() {
    let f = Founded::new("ops.test").await;
    let set = f.hash_set(1, 5);
    let logged = f.log(std::slice::from_ref(&set)).await;
    let hub = Serve::start(&f, &[]);
    assert_eq!(hub.get("/healthz"), (200, "serving\n".to_owned()));
    // The set's stored record is damaged under the running hub: the writer reads it when the
    // set comes again (to answer with its receipt) and cannot go on.
    common::rewrite_stored_record(&f.data, logged[0].0, |record| record.fill(0xff));
    let ch = channel(&hub.addr, &f.tls()).await;
    wait_for_status(&ch, HUB, ServingStatus::Serving).await;
    let mut client = Client::connect(&hub.addr, &f.tls()).await.expect("client");
    let refused = client.submit(set).await.expect_err("the writer fails");
    assert!(format!("{refused}").contains("cannot write"), "{refused}");
    let body = hub.wait_for_health(503);
    assert!(
        body.starts_with("not serving: writer down: a store write failed"),
        "{body}"
    );
    wait_for_status(&ch, HUB, ServingStatus::NotServing).await;
    assert_eq!(
        health(&ch, ADMIN).await.expect("admin"),
        ServingStatus::Serving as i32
    );
    // Every later write is refused too, until a restart.
    let later = client.submit(f.hash_set(2, 5)).await.expect_err("refused");
    assert!(format!("{later}").contains("cannot write"), "{later}");
    assert!(
        hub.log().contains("health: writer is down"),
        "{}",
        hub.log()
    );
}

#[tokio::test]
async fn health_and_reflection_answer_active_members_only() {
    let t = TestHub::start().await;
    t.admin_change(Action::Remove(id("globex")))
        .await
        .expect("remove globex");
    t.admin_change(Action::Suspend(id("acme")))
        .await
        .expect("suspend acme");
    let active = channel(&t.addr, &t.tls("auditor")).await;
    assert_eq!(
        health(&active, HUB).await.expect("health"),
        ServingStatus::Serving as i32
    );
    for (who, code, says) in [
        ("globex", tonic::Code::PermissionDenied, "removed"),
        ("acme", tonic::Code::PermissionDenied, "suspended"),
        ("outsider", tonic::Code::PermissionDenied, "not registered"),
    ] {
        let ch = channel(&t.addr, &t.tls(who)).await;
        let refused = health(&ch, HUB).await.expect_err("refused");
        assert_eq!(refused.code(), code, "{who}: {refused:?}");
        assert!(
            refused.message().contains(says),
            "{who}: {}",
            refused.message()
        );
        let refused = list_services_v1(&ch).await.expect_err("reflection refused");
        assert_eq!(refused.code(), code, "{who}: {refused:?}");
        let refused = list_services_v1alpha(&ch)
            .await
            .expect_err("v1alpha refused");
        assert_eq!(refused.code(), code, "{who}: {refused:?}");
    }
    for names in [
        list_services_v1(&active).await.expect("v1"),
        list_services_v1alpha(&active).await.expect("v1alpha"),
    ] {
        for want in [HUB, ADMIN, AUDIT, "grpc.health.v1.Health"] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
    }
}

async fn list_services_v1(ch: &tonic::transport::Channel) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let response = stream.message().await?.expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    Ok(list.service.into_iter().map(|s| s.name).collect())
}

async fn list_services_v1alpha(
    ch: &tonic::transport::Channel,
) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let response = stream.message().await?.expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    Ok(list.service.into_iter().map(|s| s.name).collect())
}

/// One page of the access log as `who` sees it.
async fn access(
    t: &TestHub,
    who: &str,
    request: pb::ListAccessRequest,
) -> Result<pb::ListAccessResponse, tonic::Status> {
    let mut client = t.client(who).await;
    client
        .admin
        .list_access(request)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn the_access_log_counts_who_synced_and_matched_for_admins_and_auditors() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    acme.submit(t.hash_set("acme", 1, 5)).await.expect("submit");
    let (entries, _) = sync_all(&mut acme, pb::SyncRequest::default()).await;
    let secret = common::sha256_value(1, 0);
    let answer = acme
        .hub
        .r#match(pb::MatchRequest {
            queries: vec![pb::MatchQuery {
                r#type: pb::HashType::Sha256 as i32,
                value: secret.clone(),
                quality: None,
            }],
            ..Default::default()
        })
        .await
        .expect("match")
        .into_inner();
    assert_eq!(answer.results[0].matches.len(), 1);
    let everything = pb::ListAccessRequest::default();
    let log = access(&t, "auditor", everything.clone())
        .await
        .expect("auditor reads");
    let mine: Vec<&pb::AccessRecord> = log
        .records
        .iter()
        .filter(|r| r.member_id == "acme")
        .collect();
    assert_eq!(mine.len(), 2, "{:?}", log.records);
    let (sync, matched) = (mine[0], mine[1]);
    assert_eq!(
        (sync.rpc.as_str(), sync.entries),
        ("Sync", entries.len() as u64)
    );
    assert!(sync.bytes > 0 && sync.ended_at_ms >= sync.started_at_ms);
    assert_eq!(
        (matched.rpc.as_str(), matched.queries, matched.hits),
        ("Match", 1, 1)
    );
    // Counts only: the query hash is nowhere in the answer.
    let encoded = prost::Message::encode_to_vec(&log);
    assert!(!encoded.windows(secret.len()).any(|w| w == secret));
    assert!(access(&t, "admin", everything.clone()).await.is_ok());
    // Members do not read it.
    let refused = access(&t, "acme", everything.clone())
        .await
        .expect_err("member");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(
        refused.message().contains("read the access log"),
        "{}",
        refused.message()
    );
    // Paging, a member filter and a time range.
    let first = access(
        &t,
        "admin",
        pb::ListAccessRequest {
            member_id: "acme".into(),
            limit: 1,
            ..Default::default()
        },
    )
    .await
    .expect("page 1");
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.records[0].rpc, "Sync");
    let second = access(
        &t,
        "admin",
        pb::ListAccessRequest {
            member_id: "acme".into(),
            limit: 1,
            page_token: first.next_page_token,
            ..Default::default()
        },
    )
    .await
    .expect("page 2");
    assert_eq!(second.records.len(), 1);
    assert_eq!(second.records[0].rpc, "Match");
    let later = access(
        &t,
        "admin",
        pb::ListAccessRequest {
            from_ms: matched.ended_at_ms + 1,
            ..Default::default()
        },
    )
    .await
    .expect("later");
    assert!(
        later
            .records
            .iter()
            .all(|r| r.started_at_ms > matched.ended_at_ms)
    );
    // Bad requests name the field.
    for (bad, says) in [
        (
            pb::ListAccessRequest {
                limit: 1001,
                ..Default::default()
            },
            "limit: at most 1000",
        ),
        (
            pb::ListAccessRequest {
                page_token: vec![1, 2],
                ..Default::default()
            },
            "page_token",
        ),
        (
            pb::ListAccessRequest {
                member_id: "Not An Id".into(),
                ..Default::default()
            },
            "member_id",
        ),
    ] {
        let refused = access(&t, "admin", bad).await.expect_err("bad request");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(says), "{}", refused.message());
    }
}

/// `coalition ARGS…` in `dir`: exit code, stdout, stderr.
fn coalition(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coalition"))
        .current_dir(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run coalition");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of the sample `name` (with its labels) in a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_operations_listener_serves_metrics_and_json_logs() {
    let f = Founded::new("ops.test").await;
    let hub = Serve::start(&f, &["--log-format", "json"]);
    assert_eq!(hub.get("/healthz"), (200, "serving\n".to_owned()));
    assert_eq!(hub.get("/nothing-here").0, 404);
    let mut client = Client::connect(&hub.addr, &f.tls()).await.expect("client");
    client.submit(f.hash_set(1, 7)).await.expect("submit");
    // A forged signature is refused and counted.
    let mut forged = f.hash_set(2, 3);
    forged.signatures[0].sig[0] ^= 1;
    client.submit(forged).await.expect_err("forged");
    let (entries, _) = sync_all(&mut client, pb::SyncRequest::default()).await;
    assert_eq!(entries.len(), 2);
    let deadline = Instant::now() + PATIENCE;
    let page = loop {
        let (code, page) = hub.get("/metrics");
        assert_eq!(code, 200);
        // The sync stream is recorded when it ends, which the hub sees just after the client;
        // the indexer catches up with the log in the background.
        let settled = sample(&page, "coalition_sync_streams_open") == Some(0.0)
            && sample(&page, "coalition_index_lag_entries") == Some(0.0);
        if settled || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for (name, want) in [
        (
            "grpc_server_started_total{grpc_service=\"coalition.v1.Hub\",grpc_method=\"Submit\"}",
            2.0,
        ),
        (
            "grpc_server_handled_total{grpc_service=\"coalition.v1.Hub\",grpc_method=\"Submit\",grpc_code=\"OK\"}",
            1.0,
        ),
        (
            "grpc_server_handled_total{grpc_service=\"coalition.v1.Hub\",grpc_method=\"Submit\",grpc_code=\"InvalidArgument\"}",
            1.0,
        ),
        (
            "grpc_server_handled_total{grpc_service=\"coalition.v1.Hub\",grpc_method=\"Sync\",grpc_code=\"OK\"}",
            1.0,
        ),
        (
            "grpc_server_handling_seconds_count{grpc_service=\"coalition.v1.Hub\",grpc_method=\"Submit\"}",
            2.0,
        ),
        ("coalition_ingested_statements_total", 1.0),
        ("coalition_ingested_hashes_total", 7.0),
        ("coalition_refusals_total{reason=\"bad_signature\"}", 1.0),
        ("coalition_log_entries", 2.0),
        ("coalition_index_lag_entries", 0.0),
        ("coalition_sync_entries_total", 2.0),
        ("coalition_sync_streams_open", 0.0),
        ("coalition_serving", 1.0),
        ("coalition_component_up{component=\"writer\"}", 1.0),
    ] {
        assert_eq!(sample(&page, name), Some(want), "{name} in\n{page}");
    }
    assert!(
        page.contains("# TYPE grpc_server_handling_seconds histogram"),
        "{page}"
    );
    assert!(
        sample(&page, "coalition_checkpoint_age_seconds").is_some(),
        "{page}"
    );
    // Every log line is one JSON object.
    let log = hub.log();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    // The access log from the command line (acme is an admin here).
    let (code, out, err) = coalition(
        f.dir.path(),
        &[
            "admin",
            "access-log",
            "--as",
            "acme",
            "--hub",
            &hub.addr,
            "--certs",
            f.certs.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let line = out.lines().next().unwrap_or_default();
    assert!(line.contains(" acme Sync entries=2 bytes="), "{out}");
}

#[test]
fn the_config_file_sets_serve_flags_and_the_command_line_wins() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("hub.toml");
    std::fs::write(&config, "listne = \"127.0.0.1:0\"\n").expect("write");
    let path = config.to_str().expect("utf-8");
    let (code, _, err) = coalition(dir.path(), &["serve", "--config", path]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{path}: unknown key 'listne'")),
        "{err}"
    );
    assert!(err.contains("listen, certs"), "the keys are listed: {err}");
    std::fs::write(&config, "cache-mib = \"many\"\n").expect("write");
    let (code, _, err) = coalition(dir.path(), &["serve", "--config", path]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(path) && err.contains("many"), "{err}");
    // A working file; its listen address is overridden on the command line, and its log
    // format applies.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let f = rt.block_on(Founded::new("ops.test"));
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\nops-listen = \"off\"\nlog-format = \"json\"\ndata = {:?}\ncerts = {:?}\ncheckpoint-ms = 50\n",
            f.data, f.certs
        ),
    )
    .expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coalition"))
        .args(["serve", "--config", path, "--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(
        line.starts_with("listening on 127.0.0.1:") && !line.contains("127.0.0.1:1\n"),
        "{line} {err}"
    );
    let first = err.lines().next().unwrap_or_default();
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "json logs: {err}"
    );
    assert!(
        !err.contains("operations listener"),
        "ops-listen off: {err}"
    );
}
