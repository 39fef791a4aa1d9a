//! The hub's resource limits with the real server over mutual TLS: each limit refuses with its
//! documented status and a message naming it and its value, stores nothing, and leaves the hub
//! serving other members (docs/PROTOCOL.md, "Limits").

use crate::common;

use coalition_hub::client::ClientError;
use coalition_hub::membership::Action;
use coalition_hub::pb;
use coalition_hub::server::{Limits, MAX_MATCHES_PER_QUERY, ServeOptions};
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType, Label};
use common::{TestHub, id};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Generous bound on waits that must end (a hang guard, never a speed assertion).
const HANG: Duration = Duration::from_secs(20);

async fn hub_with(limits: Limits) -> TestHub {
    TestHub::start_with(|_, options| ServeOptions { limits, ..options }).await
}

/// The hub still serves an honest member: WhoAmI answers and a Submit is stored.
async fn still_serves(t: &TestHub) {
    let mut globex = t.client("globex").await;
    let me = globex
        .hub
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("who am i")
        .into_inner();
    assert_eq!(me.member_id, "globex");
    let before = t.store.log_size();
    globex
        .submit(t.hash_set("globex", 77, 3))
        .await
        .expect("honest submit");
    assert_eq!(t.store.log_size(), before + 1);
}

/// An envelope of about `bytes` bytes (its payload is junk: only its size matters here).
fn big_envelope(bytes: usize) -> pb::Envelope {
    pb::Envelope {
        payload: vec![0x5a; bytes].into(),
        ..Default::default()
    }
}

fn status_of(e: ClientError) -> tonic::Status {
    match e {
        ClientError::Status(s) => s,
        other => panic!("expected a status from the hub, got {other}"),
    }
}

/// A plain channel to the hub as `member`, for stock or hand-made clients.
async fn channel_as(t: &TestHub, member: &str) -> tonic::transport::Channel {
    let tls = t.tls(member);
    tonic::transport::Endpoint::from_shared(format!("https://{}", t.addr))
        .expect("uri")
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(tls.ca_pem))
                .domain_name("localhost")
                .identity(tonic::transport::Identity::from_pem(
                    tls.cert_pem,
                    tls.key_pem,
                )),
        )
        .expect("tls")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_removed_member_is_refused_on_the_request_head_without_its_body_being_read() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    t.admin_change(Action::Remove(id("acme")))
        .await
        .expect("remove acme");
    let before = t.store.log_size();

    // A Submit whose body never comes: refused all the same, so the hub did not wait for it.
    let mut grpc = tonic::client::Grpc::new(channel_as(&t, "acme").await);
    grpc.ready().await.expect("ready");
    let never = tokio_stream::pending::<pb::SubmitRequest>();
    let path = http::uri::PathAndQuery::from_static("/coalition.v1.Hub/Submit");
    let codec = tonic_prost::ProstCodec::<pb::SubmitRequest, pb::SubmitResponse>::default();
    let answer = tokio::time::timeout(
        HANG,
        grpc.client_streaming(tonic::Request::new(never), path, codec),
    )
    .await
    .expect("answered without the body");
    let status = answer.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("removed"), "{}", status.message());

    // A 60 MiB Submit, three times on one connection: refused each time, nothing stored.
    for _ in 0..3 {
        let status = status_of(
            acme.submit(big_envelope(60 * 1024 * 1024))
                .await
                .expect_err("refused"),
        );
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("removed"), "{}", status.message());
    }
    // An unregistered member (a CA certificate, never admitted): refused on the head too.
    let mut outsider = t.client("outsider").await;
    let status = status_of(
        outsider
            .submit(big_envelope(20 * 1024 * 1024))
            .await
            .expect_err("refused"),
    );
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(t.store.log_size(), before);
    still_serves(&t).await;
}

#[tokio::test]
async fn requests_other_than_submit_are_limited_to_one_mib() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    // 5 queries of 300 KB: each invalid, but the size is refused first.
    let request = pb::MatchRequest {
        queries: (0..5)
            .map(|_| pb::MatchQuery {
                r#type: HashType::Sha256.to_wire() as i32,
                value: vec![1; 300 * 1024],
                quality: None,
            })
            .collect(),
        ..Default::default()
    };
    let status = acme.hub.r#match(request).await.expect_err("too large");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("/coalition.v1.Hub/Match is larger than its limit of 1048576 bytes"),
        "{}",
        status.message()
    );
    // A Submit may be much larger: a 3 MiB one gets as far as its validation.
    let status = status_of(
        acme.submit(big_envelope(3 * 1024 * 1024))
            .await
            .expect_err("junk"),
    );
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(t.store.log_size(), t.base);
    still_serves(&t).await;
}

#[tokio::test]
async fn calls_in_flight_are_limited_in_total() {
    let t = hub_with(Limits {
        max_calls_in_flight: 2,
        ..Limits::default()
    })
    .await;
    let mut acme = t.client("acme").await;
    let follow = pb::SyncRequest {
        from_seq: 0,
        follow: true,
        ..Default::default()
    };
    let first = acme.hub.sync(follow.clone()).await.expect("first stream");
    let second = acme.hub.sync(follow.clone()).await.expect("second stream");
    let status = acme
        .hub
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("limit of 2 calls at once (max_calls_in_flight)"),
        "{}",
        status.message()
    );
    // Ending a stream frees its call.
    drop(first);
    let mut answered = false;
    for _ in 0..200 {
        if acme.hub.who_am_i(pb::WhoAmIRequest {}).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "a call is admitted once a stream ended");
    drop(second);
}

#[tokio::test]
async fn request_bytes_in_flight_are_limited_in_total() {
    let t = hub_with(Limits {
        max_request_bytes_in_flight: 1024 * 1024,
        ..Limits::default()
    })
    .await;
    let mut acme = t.client("acme").await;
    let status = status_of(
        acme.submit(big_envelope(2 * 1024 * 1024))
            .await
            .expect_err("too much at once"),
    );
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("limit of 1048576 bytes of requests at once (max_request_bytes_in_flight)"),
        "{}",
        status.message()
    );
    assert_eq!(t.store.log_size(), t.base);
    // The bytes of the refused call were released: smaller calls go on.
    still_serves(&t).await;
    still_serves(&t).await;
}

#[tokio::test]
async fn match_results_are_capped_per_query_with_a_truncated_flag() {
    let t = TestHub::start().await;
    let mut acme = t.client("acme").await;
    let value = vec![7u8; 32];
    let copies = MAX_MATCHES_PER_QUERY + 20;
    let set = HashSet {
        expires_at_ms: None,
        description: String::new(),
        entries: (0..copies)
            .map(|_| HashEntry {
                hash_type: HashType::Sha256,
                value: value.clone(),
                quality: None,
                labels: vec![Label::Tag("dup".into())],
            })
            .collect(),
    };
    acme.submit(coalition_hub::client::sign_new(
        &id("acme"),
        &t.key("acme"),
        Body::HashSet(set),
    ))
    .await
    .expect("a set repeating one hash");
    let query = |v: Vec<u8>| pb::MatchQuery {
        r#type: HashType::Sha256.to_wire() as i32,
        value: v,
        quality: None,
    };
    let response = acme
        .hub
        .r#match(pb::MatchRequest {
            queries: vec![query(value.clone()), query(vec![8u8; 32])],
            ..Default::default()
        })
        .await
        .expect("match")
        .into_inner();
    assert!(response.truncated);
    assert_eq!(response.results.len(), 2);
    assert_eq!(response.results[0].matches.len(), MAX_MATCHES_PER_QUERY);
    assert!(response.results[0].truncated);
    assert!(response.results[1].matches.is_empty());
    assert!(!response.results[1].truncated);
}

/// A TCP connection from `source` (a loopback address) that sends nothing.
async fn idle_socket(source: &str, hub: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source"))
        .expect("bind");
    socket
        .connect(hub.parse().expect("hub addr"))
        .await
        .expect("connect")
}

/// Whether the hub closes `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all).await.is_ok()
}

#[tokio::test]
async fn pending_handshakes_are_limited_per_source_address() {
    let t = hub_with(Limits {
        max_handshakes_per_source: 4,
        handshake_timeout: Duration::from_secs(60),
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(idle_socket("127.0.0.2", &t.addr).await);
    }
    // Let the hub accept those four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = idle_socket("127.0.0.2", &t.addr).await;
    assert!(
        closed_within(&mut extra, HANG).await,
        "the fifth handshake from 127.0.0.2 is closed unread"
    );
    // Another address is not held up by them.
    still_serves(&t).await;
    assert!(
        !closed_within(&mut held[0], Duration::from_millis(200)).await,
        "the first four wait for their handshake"
    );
}

#[tokio::test]
async fn a_silent_handshake_times_out() {
    let t = hub_with(Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut silent = idle_socket("127.0.0.1", &t.addr).await;
    assert!(closed_within(&mut silent, HANG).await, "closed by the hub");
    still_serves(&t).await;
}

/// Completes a TLS handshake as `member` and returns the stream, nothing sent yet.
async fn tls_as(
    t: &TestHub,
    member: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tls = t.tls(member);
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots.add(ca.expect("ca pem")).expect("ca");
    }
    let chain = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).expect("key pem");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(&t.addr).await.expect("tcp");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

#[tokio::test]
async fn a_connection_without_the_http2_preface_is_closed() {
    let t = hub_with(Limits {
        preface_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut quiet = tls_as(&t, "acme").await;
    assert!(closed_within(&mut quiet, HANG).await, "closed by the hub");
    still_serves(&t).await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_an_open_stream_keeps_it() {
    let t = hub_with(Limits {
        idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    let mut idle = tls_as(&t, "acme").await;
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    assert!(closed_within(&mut idle, HANG).await, "idle: closed");

    // A following sync outlives the idle timeout: entries still arrive after it.
    let mut follower = t.follow("acme").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut globex = t.client("globex").await;
    globex
        .submit(t.hash_set("globex", 5, 2))
        .await
        .expect("submit");
    let from_globex = async {
        loop {
            let entry = follower.next_statement().await;
            if entry.statement().is_some_and(|s| s.issuer == id("globex")) {
                return;
            }
        }
    };
    tokio::time::timeout(HANG, from_globex)
        .await
        .expect("the stream is still open");
}

/// One HTTP/2 frame as written on the wire (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The request head of a gRPC call as HPACK literals without indexing (RFC 7541 §6.2.2), so
/// no dynamic table is involved; every name and value here is shorter than 127 bytes.
fn grpc_request_head(path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0);
        block.push(u8::try_from(name.len()).expect("short name"));
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Reads frames until `done` says so; returns every (type, flags, stream, payload) read.
async fn read_frames(
    stream: &mut (impl AsyncReadExt + Unpin),
    mut done: impl FnMut(&[(u8, u8, u32, Vec<u8>)]) -> bool,
) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    while !done(&frames) {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.expect("a frame head");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        stream
            .read_exact(&mut payload)
            .await
            .expect("a frame payload");
        frames.push((head[3], head[4], id, payload));
    }
    frames
}

#[tokio::test]
async fn streams_beyond_the_per_connection_limit_are_refused_and_the_rest_go_on() {
    const LIMIT: u32 = 4;
    const SETTINGS: u8 = 0x4;
    const RST_STREAM: u8 = 0x3;
    const GOAWAY: u8 = 0x7;
    const REFUSED_STREAM: u32 = 0x7;
    let t = hub_with(Limits {
        max_streams_per_connection: LIMIT,
        ..Limits::default()
    })
    .await;
    let mut raw = tls_as(&t, "acme").await;
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    raw.write_all(&frame(SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    // The hub's SETTINGS come first and announce the limit (SETTINGS_MAX_CONCURRENT_STREAMS,
    // identifier 0x3).
    let frames = tokio::time::timeout(
        HANG,
        read_frames(&mut raw, |f| {
            f.iter()
                .any(|(kind, flags, ..)| *kind == SETTINGS && flags & 1 == 0)
        }),
    )
    .await
    .expect("the hub's settings");
    let settings = &frames
        .iter()
        .find(|(kind, flags, ..)| *kind == SETTINGS && flags & 1 == 0)
        .expect("settings")
        .3;
    let announced = settings
        .chunks_exact(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(announced, Some(LIMIT), "SETTINGS_MAX_CONCURRENT_STREAMS");
    raw.write_all(&frame(SETTINGS, 1, 0, &[]))
        .await
        .expect("settings ack");

    // A hostile client ignores the limit: LIMIT + 2 calls opened at once, none of them ever
    // sends its request message, so every stream stays open.
    const END_HEADERS: u8 = 0x4;
    let head = grpc_request_head("/coalition.v1.Hub/WhoAmI");
    let ids: Vec<u32> = (0..LIMIT + 2).map(|k| 1 + 2 * k).collect();
    for id in &ids {
        raw.write_all(&frame(0x1, END_HEADERS, *id, &head))
            .await
            .expect("headers");
    }
    let over: Vec<u32> = ids[LIMIT as usize..].to_vec();
    let refused_all = |frames: &[(u8, u8, u32, Vec<u8>)]| {
        over.iter().all(|id| {
            frames
                .iter()
                .any(|(kind, _, stream, _)| *kind == RST_STREAM && stream == id)
        })
    };
    let frames = tokio::time::timeout(HANG, read_frames(&mut raw, refused_all))
        .await
        .expect("the streams over the limit are reset");
    for (kind, _, stream, payload) in &frames {
        assert_ne!(*kind, GOAWAY, "the connection itself is not closed");
        if *kind == RST_STREAM {
            assert!(
                over.contains(stream),
                "stream {stream} under the limit was reset"
            );
            let code = u32::from_be_bytes(payload[..4].try_into().expect("4 bytes"));
            assert_eq!(code, REFUSED_STREAM, "stream {stream}: RST_STREAM code");
        }
    }
    // The streams under the limit are still open, the hub serves everyone else, and the same
    // connection can still finish a call: its request message (an empty WhoAmIRequest) on the
    // first stream gets the answer.
    still_serves(&t).await;
    const END_STREAM: u8 = 0x1;
    raw.write_all(&frame(0x0, END_STREAM, ids[0], &[0, 0, 0, 0, 0]))
        .await
        .expect("request message");
    let answered = |frames: &[(u8, u8, u32, Vec<u8>)]| {
        frames.iter().any(|(kind, flags, stream, _)| {
            *kind == 0x1 && flags & END_STREAM != 0 && *stream == ids[0]
        })
    };
    let frames = tokio::time::timeout(HANG, read_frames(&mut raw, answered))
        .await
        .expect("the first call is answered on the same connection");
    let data: usize = frames
        .iter()
        .filter(|(kind, _, stream, _)| *kind == 0x0 && *stream == ids[0])
        .map(|f| f.3.len())
        .sum();
    assert!(data > 5, "a WhoAmI response message arrived ({data} bytes)");
}

#[tokio::test]
async fn health_needs_an_active_member_like_every_call() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let t = TestHub::start().await;
    for (member, allowed) in [("globex", true), ("outsider", false)] {
        let answer = HealthClient::new(channel_as(&t, member).await)
            .check(HealthCheckRequest {
                service: "coalition.v1.Hub".into(),
            })
            .await;
        match (allowed, answer) {
            (true, Ok(_)) => {}
            (false, Err(status)) => {
                assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
                assert!(
                    status.message().contains("outsider"),
                    "{}",
                    status.message()
                );
            }
            (allowed, answer) => panic!("{member}: allowed {allowed}, got {answer:?}"),
        }
    }
}
