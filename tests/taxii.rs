//! The TAXII 2.1 read API (docs/PROTOCOL.md §8) of a real hub, read over real HTTPS with
//! mutual TLS (hyper + rustls): discovery, the API root, the collections, objects paged with
//! `next` over several pages, `added_after`, `match[type]` / `match[id]` / `match[version]`,
//! the manifest, an object and its versions, an indicator revoked by its retraction, a STIX
//! opinion from an opinion, a restricted statement invisible to a non-recipient exactly as in
//! Sync, and the refusals (TLS without a certificate, 401, 403, 404, 400, 405, 406); reads
//! charged to the sync-bytes quota shared with gRPC (429) and recorded in the access log.

use crate::common;

use std::collections::HashSet as Set;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use coalition_hub::client::{sign_new, sign_new_for};
use coalition_hub::governance;
use coalition_hub::lifecycle::{HashKey, Opinion, Verdict};
use coalition_hub::membership::{Action, Role};
use coalition_hub::pb;
use coalition_hub::pki::TlsConfig;
use coalition_hub::settings::{QuotaLimits, Quotas, Section};
use coalition_hub::statement::{Body, HashEntry, HashType, Indicator, Recipients, StatementId};
use coalition_hub::store::AccessCall;
use coalition_hub::taxii::{Collection, stix};
use common::lifecycle::{logged, retract, share_signal};
use common::{TestHub, id, sha256_set, sha256_value};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::Value;

const TAXII: &str = "application/taxii+json;version=2.1";

/// A TAXII client of one member (or of nobody: no client certificate).
struct Reader {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

/// An answer: status, content type, the date-added headers and the JSON body.
struct Got {
    status: u16,
    content_type: String,
    first: Option<String>,
    last: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

impl Reader {
    fn new(addr: SocketAddr, tls: &TlsConfig, with_cert: bool) -> Reader {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&tls.ca_pem) {
            roots.add(ca.expect("ca pem")).expect("ca");
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = if with_cert {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(&tls.cert_pem)
                .map(|c| c.expect("cert pem"))
                .collect();
            let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).expect("key pem");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        } else {
            builder.with_no_client_auth()
        };
        Reader {
            addr,
            config: Arc::new(config),
        }
    }

    /// GET `path` with `Accept: accept` (the TAXII media type unless given).
    async fn try_get(&self, method: &str, path: &str, accept: Option<&str>) -> Result<Got, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(
                http::header::HOST,
                format!("localhost:{}", self.addr.port()),
            )
            .header(http::header::ACCEPT, accept.unwrap_or(TAXII))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        let (status, content_type) = (
            response.status().as_u16(),
            header("content-type").unwrap_or_default(),
        );
        let (first, last) = (
            header("x-taxii-date-added-first"),
            header("x-taxii-date-added-last"),
        );
        let retry_after = header("retry-after");
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).map_err(|e| format!("json: {e}"))?;
        Ok(Got {
            status,
            content_type,
            first,
            last,
            retry_after,
            body,
        })
    }

    async fn get(&self, path: &str) -> Got {
        self.try_get("GET", path, None).await.expect(path)
    }

    /// Every object of `collection_path` (`…/objects/` with `params`), following `next`:
    /// the objects and the number of pages.
    async fn all(&self, objects_path: &str, params: &str) -> (Vec<Value>, usize) {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        for pages in 1..=1000 {
            let mut path = format!("{objects_path}?{params}");
            if let Some(n) = &next {
                path.push_str(&format!("&next={n}"));
            }
            let got = self.get(&path).await;
            assert_eq!(got.status, 200, "{path}: {}", got.body);
            if let Some(objects) = got.body["objects"].as_array() {
                out.extend(objects.iter().cloned());
            }
            if got.body["more"] != true {
                return (out, pages);
            }
            next = Some(
                got.body["next"]
                    .as_str()
                    .expect("next with more")
                    .to_owned(),
            );
        }
        panic!("more than 1000 pages");
    }
}

/// A port free on loopback now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A test hub serving TAXII, with outsider admitted as a member: the hub and the TAXII address.
async fn hub() -> (TestHub, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let t = TestHub::start_with(|_, mut options| {
        options.taxii_listen = Some(addr);
        options
    })
    .await;
    t.admin_change(Action::Admit(governance::admission(
        &id("outsider"),
        "Outsider",
        &[Role::Member],
        &[t.key("outsider").verifying_key()],
    )))
    .await
    .expect("admit outsider");
    (t, addr)
}

fn collection_path(t: &TestHub, c: Collection) -> String {
    let genesis = t.store.registry().coalition().expect("hub").genesis_id;
    format!("/coalition/collections/{}/", c.id(&genesis))
}

fn of_type<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["type"] == kind).collect()
}

fn extension(o: &Value) -> &Value {
    &o["extensions"][stix::extension_id()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taxii_serves_the_log_as_stix_paged_filtered_and_versioned() {
    let (t, addr) = hub().await;
    let (set, set_seq) = logged(&t, "acme", t.hash_set("acme", 41, 25)).await;
    let pdq = HashEntry {
        hash_type: HashType::Pdq,
        value: vec![0x5a; 32],
        quality: Some(90),
        labels: vec![],
    };
    let (signal, _) = share_signal(
        &t,
        "acme",
        "payment handle",
        "seen in sextortion scripts".into(),
        vec![
            Indicator::Url("https://pay.example/it's".into()),
            Indicator::Domain("pay.example".into()),
            Indicator::Keyword("send (now)".into()),
            Indicator::Hash(pdq),
        ],
    )
    .await;
    let acme = Reader::new(addr, &t.tls("acme"), true);

    // Discovery, the API root and the collections.
    let discovery = acme.get("/taxii2/").await;
    assert_eq!(discovery.status, 200);
    assert_eq!(discovery.content_type, TAXII);
    let root = format!("https://localhost:{}/coalition/", addr.port());
    assert_eq!(discovery.body["api_roots"], serde_json::json!([root]));
    assert_eq!(discovery.body["default"], root);
    let api_root = acme.get("/coalition/").await;
    assert_eq!(api_root.body["versions"], serde_json::json!([TAXII]));
    let collections = acme.get("/coalition/collections/").await;
    let listed = collections.body["collections"].as_array().expect("list");
    assert_eq!(listed.len(), 2);
    for c in Collection::ALL {
        let got = acme.get(&collection_path(&t, c)).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body["title"], c.title());
        assert_eq!(got.body["can_read"], true);
        assert_eq!(got.body["can_write"], false);
        assert!(listed.contains(&got.body));
    }

    // Every object of the hash-set collection, 10 a page.
    let hashes = format!("{}objects/", collection_path(&t, Collection::HashSets));
    let (objects, pages) = acme.all(&hashes, "limit=10").await;
    let indicators = of_type(&objects, "indicator");
    assert_eq!(indicators.len(), 25, "one indicator per hash");
    assert!(pages >= 3, "{pages} pages");
    let ids: Set<&str> = objects
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), objects.len(), "no object twice");
    for (i, o) in indicators.iter().enumerate() {
        assert_eq!(o["id"], stix::indicator_id(&set, i as u32));
        assert_eq!(
            o["pattern"],
            format!(
                "[file:hashes.'SHA-256' = '{}']",
                hex::encode(sha256_value(41, i as u64))
            )
        );
        assert_eq!(o["pattern_type"], "stix");
        assert_eq!(o["spec_version"], "2.1");
        assert_eq!(
            o["created_by_ref"],
            stix::identity_id(&genesis(&t), &id("acme"))
        );
        let ext = extension(o);
        assert_eq!(ext["statement_id"], set.to_string());
        assert_eq!(ext["entry_index"], i);
        assert_eq!(ext["log_seq"], set_seq);
        assert_eq!(ext["state"], "active");
        assert!(o.get("revoked").is_none());
    }
    let identities = of_type(&objects, "identity");
    for member in ["admin", "acme", "globex", "auditor", "outsider"] {
        let want = stix::identity_id(&genesis(&t), &id(member));
        assert!(
            identities.iter().any(|o| o["id"] == want),
            "{member}'s identity"
        );
    }
    assert_eq!(of_type(&objects, "extension-definition").len(), 1);
    // The same walk in one page gives the same objects in the same order.
    let (whole, one) = acme.all(&hashes, "limit=5000").await;
    assert_eq!((whole, one), (objects.clone(), 1));

    // The date-added headers, and added_after from the manifest.
    let page = acme.get(&format!("{hashes}?limit=10")).await;
    assert_eq!(page.body["objects"].as_array().expect("objects").len(), 10);
    assert_eq!(page.body["more"], true);
    assert!(page.first.is_some() && page.last.is_some());
    let manifest = acme
        .get(&format!(
            "{}manifest/?limit=5000",
            collection_path(&t, Collection::HashSets)
        ))
        .await;
    let records = manifest.body["objects"].as_array().expect("manifest");
    assert_eq!(records.len(), objects.len());
    assert!(
        records
            .iter()
            .all(|r| r["media_type"] == "application/stix+json;version=2.1")
    );
    let before_set = records
        .iter()
        .rev()
        .find(|r| {
            r["id"]
                .as_str()
                .is_some_and(|i| i.starts_with("identity--"))
        })
        .expect("an identity")["date_added"]
        .as_str()
        .expect("date")
        .to_owned();
    let (after, _) = acme
        .all(&hashes, &format!("limit=7&added_after={before_set}"))
        .await;
    let later = records
        .iter()
        .filter(|r| r["date_added"].as_str().expect("d") > before_set.as_str())
        .count();
    assert_eq!(after.len(), later);
    assert_eq!(of_type(&after, "indicator").len(), 25);

    // match[type] and match[id].
    let (only, _) = acme.all(&hashes, "match[type]=indicator&limit=9").await;
    assert_eq!(only.len(), 25);
    let third = stix::indicator_id(&set, 3);
    let (one, _) = acme.all(&hashes, &format!("match[id]={third}")).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["id"], third);

    // An object and its versions, before and after a retraction of its entry.
    let object_path = format!("{hashes}{third}/");
    let before = acme.get(&object_path).await;
    assert_eq!(before.status, 200);
    assert_eq!(before.body["objects"][0]["id"], third);
    let versions = acme.get(&format!("{object_path}versions/")).await;
    assert_eq!(
        versions.body["versions"]
            .as_array()
            .expect("versions")
            .len(),
        1
    );
    retract(&t, "acme", set, &[3], "wrong hash").await;
    let after = acme.get(&object_path).await;
    let revoked = &after.body["objects"][0];
    assert_eq!(revoked["revoked"], true);
    assert_eq!(extension(revoked)["state"], "retracted");
    assert!(revoked["modified"].as_str() > before.body["objects"][0]["modified"].as_str());
    let versions = acme.get(&format!("{object_path}versions/")).await;
    let list = versions.body["versions"].as_array().expect("versions");
    assert_eq!(list.len(), 2);
    assert_eq!(list[1], revoked["modified"]);
    let first = acme
        .get(&format!("{object_path}?match[version]=first"))
        .await;
    assert!(first.body["objects"][0].get("revoked").is_none());
    let all = acme.get(&format!("{object_path}?match[version]=all")).await;
    assert_eq!(all.body["objects"].as_array().expect("all").len(), 2);
    // A poller that saw the set sees the revocation as a newer object.
    let (news, _) = acme
        .all(&hashes, &format!("added_after={}", page_last(records)))
        .await;
    assert!(
        news.iter()
            .any(|o| o["id"] == third && o["revoked"] == true),
        "{news:?}"
    );

    // An opinion by globex on entry 5: a STIX opinion and a new version of the indicator.
    let fifth = stix::indicator_id(&set, 5);
    logged(
        &t,
        "globex",
        sign_new(
            &id("globex"),
            &t.key("globex"),
            Body::Opinion(Opinion {
                target: set,
                entry: 5,
                verdict: Verdict::Confirmed,
                note: "confirmed here".into(),
                hash: Some(HashKey {
                    hash_type: HashType::Sha256,
                    value: sha256_value(41, 5),
                }),
                admin_quorum: false,
            }),
        ),
    )
    .await;
    let (opinions, _) = acme.all(&hashes, "match[type]=opinion").await;
    assert_eq!(opinions.len(), 1);
    assert_eq!(opinions[0]["opinion"], "strongly-agree");
    assert_eq!(opinions[0]["object_refs"], serde_json::json!([fifth]));
    assert_eq!(opinions[0]["explanation"], "confirmed here");
    let versions = acme.get(&format!("{hashes}{fifth}/versions/")).await;
    assert_eq!(versions.body["versions"].as_array().expect("v").len(), 2);

    // The risk-signal collection: one indicator per signal indicator.
    let signals = format!("{}objects/", collection_path(&t, Collection::RiskSignals));
    let (objects, _) = acme.all(&signals, "match[type]=indicator").await;
    let patterns: Vec<(&str, &str)> = objects
        .iter()
        .map(|o| {
            (
                o["pattern"].as_str().expect("p"),
                o["pattern_type"].as_str().expect("t"),
            )
        })
        .collect();
    assert_eq!(
        patterns,
        [
            ("[url:value = 'https://pay.example/it\\'s']", "stix"),
            ("[domain-name:value = 'pay.example']", "stix"),
            ("send \\(now\\)", "pcre"),
            (
                &*format!("[file:hashes.x_pdq = '{}']", "5a".repeat(32)),
                "stix"
            ),
        ]
    );
    assert!(objects.iter().all(|o| o["name"] == "payment handle"));
    assert_eq!(extension(&objects[3])["pdq_quality"], 90);
    assert_eq!(extension(&objects[0])["statement_id"], signal.to_string());
}

/// The last `date_added` of a manifest.
/// A client certificate issued by `t`'s coalition CA that names no member (no member URI).
fn certificate_naming_nobody(t: &TestHub) -> TlsConfig {
    certificate_for(t, None)
}

/// A fresh client certificate from `t`'s coalition CA naming `member` (or nobody).
fn certificate_for(t: &TestHub, member: Option<&str>) -> TlsConfig {
    let read = |name: &str| std::fs::read_to_string(t.certs.root().join(name)).expect(name);
    let ca_key = rcgen::KeyPair::from_pem(&read("ca.key")).expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read("ca.pem"), ca_key).expect("CA");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, member.unwrap_or("nobody"));
    if let Some(member) = member {
        let uri = coalition_hub::membership::MemberId::parse(member)
            .expect("member id")
            .uri();
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.as_str().try_into().expect("uri"))];
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    TlsConfig {
        ca_pem: read("ca.pem").into_bytes(),
        cert_pem: cert.pem().into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
    }
}

fn page_last(records: &[Value]) -> String {
    records
        .iter()
        .filter_map(|r| r["date_added"].as_str())
        .max()
        .expect("records")
        .to_owned()
}

fn genesis(t: &TestHub) -> StatementId {
    t.store.registry().coalition().expect("hub").genesis_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taxii_shows_each_reader_what_sync_shows_it_and_refuses_with_taxii_errors() {
    let (t, addr) = hub().await;
    let recipients = Recipients::from_members(vec![id("globex")], &id("acme")).expect("valid");
    let (secret, _) = logged(
        &t,
        "acme",
        sign_new_for(
            &id("acme"),
            &t.key("acme"),
            Body::HashSet(sha256_set(51, 3)),
            &recipients,
        ),
    )
    .await;
    let (open, _) = logged(&t, "acme", t.hash_set("acme", 52, 2)).await;
    let hashes = format!("{}objects/", collection_path(&t, Collection::HashSets));
    let indicators = |objects: &[Value]| -> Set<String> {
        of_type(objects, "indicator")
            .iter()
            .map(|o| o["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let secret_ids: Set<String> = (0..3).map(|i| stix::indicator_id(&secret, i)).collect();
    let open_ids: Set<String> = (0..2).map(|i| stix::indicator_id(&open, i)).collect();
    for (member, sees_secret) in [
        ("acme", true),
        ("globex", true),
        ("auditor", true),
        ("outsider", false),
    ] {
        let reader = Reader::new(addr, &t.tls(member), true);
        let (objects, _) = reader.all(&hashes, "").await;
        let seen = indicators(&objects);
        assert!(open_ids.is_subset(&seen), "{member}");
        assert_eq!(secret_ids.is_subset(&seen), sees_secret, "{member}");
        assert!(sees_secret || seen.is_disjoint(&secret_ids), "{member}");
        // Nor by id.
        let lookup = reader
            .get(&format!("{hashes}{}/", stix::indicator_id(&secret, 0)))
            .await;
        assert_eq!(
            lookup.status,
            if sees_secret { 200 } else { 404 },
            "{member}"
        );
    }

    let outsider = Reader::new(addr, &t.tls("outsider"), true);
    let refused = |got: &Got, status: u16, text: &str| {
        assert_eq!(got.status, status, "{}", got.body);
        assert_eq!(got.content_type, TAXII);
        assert_eq!(got.body["http_status"], status.to_string());
        assert!(got.body["title"].is_string());
        let description = got.body["description"].as_str().expect("description");
        assert!(description.contains(text), "{description}");
    };
    // 404: an unknown collection, object or path.
    refused(
        &outsider
            .get("/coalition/collections/00000000-0000-0000-0000-000000000000/objects/")
            .await,
        404,
        "no collection",
    );
    refused(
        &outsider
            .get(&format!(
                "{hashes}indicator--00000000-0000-5000-8000-000000000000/"
            ))
            .await,
        404,
        "no object",
    );
    refused(&outsider.get("/elsewhere/").await, 404, "taxii2");
    // 400: bad parameters, with the reason.
    for (params, text) in [
        ("added_after=yesterday", "added_after"),
        ("limit=0", "limit"),
        ("next=nonsense", "next"),
        ("next=999999-0", "beyond"),
        ("match[version]=sometimes", "match[version]"),
        ("colour=red", "unknown parameter"),
    ] {
        refused(
            &outsider.get(&format!("{hashes}?{params}")).await,
            400,
            text,
        );
    }
    // 406: an Accept the server cannot answer; 405: a write.
    let got = outsider
        .try_get("GET", "/taxii2/", Some("text/html"))
        .await
        .expect("answered");
    refused(&got, 406, TAXII);
    let got = outsider
        .try_get("POST", &hashes, None)
        .await
        .expect("answered");
    refused(&got, 405, "read-only");

    // No client certificate: refused by TLS (no request is answered).
    let anonymous = Reader::new(addr, &t.tls("acme"), false);
    assert!(anonymous.try_get("GET", "/taxii2/", None).await.is_err());

    // 401: a certificate of the coalition CA that names no member, and one that is not the
    // certificate a member's admission pins.
    let nobody = Reader::new(addr, &certificate_naming_nobody(&t), true);
    refused(&nobody.get("/taxii2/").await, 401, "names no member");
    refused(&nobody.get(&hashes).await, 401, "names no member");
    let acme_cert = rustls::pki_types::CertificateDer::from_pem_slice(&t.tls("acme").cert_pem)
        .expect("acme's certificate");
    let mut pinned = governance::admission(
        &id("pinned"),
        "PINNED",
        &[Role::Member],
        &[ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key()],
    );
    pinned.cert_pins = vec![<sha2::Sha256 as sha2::Digest>::digest(acme_cert.as_ref()).into()];
    t.admin_change(Action::Admit(pinned)).await.expect("admit");
    let mut wrong = t.tls("acme");
    let fresh = certificate_for(&t, Some("pinned"));
    wrong.cert_pem = fresh.cert_pem;
    wrong.key_pem = fresh.key_pem;
    let unpinned = Reader::new(addr, &wrong, true);
    refused(&unpinned.get("/taxii2/").await, 401, "admitted with");

    // 403: a valid certificate whose member is suspended.
    t.admin_change(Action::Suspend(id("outsider")))
        .await
        .expect("suspend");
    refused(&outsider.get("/taxii2/").await, 403, "outsider");
    refused(&outsider.get(&hashes).await, 403, "outsider");
}

/// TAXII reads count against the member's sync-bytes quota, in one ledger with gRPC's Sync:
/// once used up, 429 with `Retry-After` and a TAXII error body, and a Sync is refused too;
/// other members and discovery are not held up; each collection read is an access record.
#[tokio::test(flavor = "multi_thread")]
async fn taxii_reads_count_against_the_sync_quota_and_are_access_records() {
    let (t, addr) = hub().await;
    logged(&t, "acme", t.hash_set("acme", 61, 5)).await;
    let mut policy = Quotas::default();
    policy.members.insert(
        id("globex"),
        QuotaLimits {
            sync_bytes_per_minute: Some(1),
            ..Default::default()
        },
    );
    t.client("admin")
        .await
        .submit(governance::settings(
            &id("admin"),
            &t.key("admin"),
            Section::Quotas(policy),
            "fair use",
        ))
        .await
        .expect("quotas set");
    let hashes = format!("{}objects/", collection_path(&t, Collection::HashSets));
    let globex = Reader::new(addr, &t.tls("globex"), true);
    // A full bucket serves one page however large (it is left in debt) ...
    let first = globex.get(&hashes).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let served = first.body["objects"].as_array().expect("objects").len() as u64;
    assert!(served >= 5, "{served}");
    // ... then the member is over its quota, in TAXII and in gRPC alike.
    for path in [
        hashes.clone(),
        format!("{}manifest/", collection_path(&t, Collection::HashSets)),
    ] {
        let refused = globex.get(&path).await;
        assert_eq!(refused.status, 429, "{}", refused.body);
        assert_eq!(refused.content_type, TAXII);
        assert_eq!(refused.body["http_status"], "429");
        let secs: u64 = refused
            .retry_after
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After: {:?}", refused.retry_after));
        assert!(secs >= 1, "{secs}");
        let description = refused.body["description"].as_str().expect("description");
        assert!(
            description.contains("globex")
                && description.contains(&format!("retry after {secs} s")),
            "{description}"
        );
    }
    let status = t
        .client("globex")
        .await
        .hub
        .sync(pb::SyncRequest::default())
        .await
        .expect_err("the same ledger: a Sync is refused at once");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    // Discovery shows no collection content and is not counted; acme has no limit.
    assert_eq!(globex.get("/taxii2/").await.status, 200);
    let acme = Reader::new(addr, &t.tls("acme"), true);
    assert_eq!(acme.get(&hashes).await.status, 200);
    // The access log: globex's one page served, with its objects and bytes.
    let records = t
        .store
        .access()
        .list(0, i64::MAX, Some(&id("globex")), 100, None)
        .expect("access log")
        .records;
    let taxii: Vec<_> = records
        .iter()
        .filter(|r| r.call == AccessCall::Taxii)
        .collect();
    assert_eq!(taxii.len(), 1, "{records:?}");
    assert_eq!(taxii[0].entries, served);
    assert!(taxii[0].bytes > 100 * served, "{:?}", taxii[0]);
    assert!(taxii[0].started_at_ms <= taxii[0].ended_at_ms);
}
