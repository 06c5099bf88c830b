//! Health monitors: exact rise/fall counts, traffic follows health.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use fulcrum_dataplane::*;

fn monitor(kind: HealthMonitorKind, rise: u32, fall: u32) -> HealthMonitorConfig {
    HealthMonitorConfig {
        kind,
        delay: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        max_retries: rise,
        max_retries_down: fall,
        admin_state_up: true,
    }
}

async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<HealthEvent>,
    member: &str,
) -> OperatingStatus {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("health event")
            .unwrap();
        if ev.member_id == member {
            return ev.status;
        }
    }
}

#[tokio::test]
async fn http_monitor_counts_exact_rise_and_fall() {
    let h = Harness::new();
    let mut events = h.dp.subscribe_health();
    let (good, flaky) = (
        HttpBackend::start("good").await,
        HttpBackend::start("flaky").await,
    );
    let kind = HealthMonitorKind::Http {
        method: "GET".into(),
        url_path: "/healthz".into(),
        expected_codes: "200-204".into(),
    };
    let mut p = pool(
        "p",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("good", good.addr), member("flaky", flaky.addr)],
    );
    p.health_monitor = Some(monitor(kind, 3, 2));
    flaky.status.store(500, Ordering::SeqCst);
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Http, Some(p))]))
        .await;
    assert_eq!(h.dp.member_health()["flaky"], OperatingStatus::Offline); // not checked yet

    // fall = 2: ERROR exactly after the second failed check.
    assert_eq!(
        next_event(&mut events, "flaky").await,
        OperatingStatus::Error
    );
    assert_eq!(flaky.requests.load(Ordering::SeqCst), 2);
    assert_eq!(h.dp.member_health()["good"], OperatingStatus::Online);
    // Failed members get no traffic.
    let c = client();
    for _ in 0..4 {
        assert_eq!(get(&c, h.addr("l"), "/", &[]).await.body, "good");
    }

    // rise = 3: ONLINE exactly after the third good check.
    let before = flaky.requests.load(Ordering::SeqCst);
    flaky.status.store(204, Ordering::SeqCst);
    assert_eq!(
        next_event(&mut events, "flaky").await,
        OperatingStatus::Online
    );
    assert_eq!(flaky.requests.load(Ordering::SeqCst) - before, 3);

    // And down again after exactly two failures.
    let before = flaky.requests.load(Ordering::SeqCst);
    flaky.status.store(503, Ordering::SeqCst);
    assert_eq!(
        next_event(&mut events, "flaky").await,
        OperatingStatus::Error
    );
    assert_eq!(flaky.requests.load(Ordering::SeqCst) - before, 2);
}

#[tokio::test]
async fn tcp_monitor_follows_a_member_that_dies_and_returns() {
    let h = Harness::new();
    let mut events = h.dp.subscribe_health();
    let a = TcpBackend::start("a").await;
    let b = TcpBackend::start("b").await;
    let b_addr = b.addr;
    let mut p = pool(
        "p",
        PoolProtocol::Tcp,
        LbAlgorithm::RoundRobin,
        vec![member("a", a.addr), member("b", b.addr)],
    );
    p.health_monitor = Some(monitor(HealthMonitorKind::Tcp, 2, 1));
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Tcp, Some(p))]))
        .await;
    assert_eq!(next_event(&mut events, "b").await, OperatingStatus::Online);

    drop(b);
    assert_eq!(next_event(&mut events, "b").await, OperatingStatus::Error);
    for _ in 0..4 {
        assert_eq!(tcp_name(h.addr("l")).await.as_deref(), Some("a"));
    }

    let _b = TcpBackend::serve("b", tokio::net::TcpListener::bind(b_addr).await.unwrap());
    assert_eq!(next_event(&mut events, "b").await, OperatingStatus::Online);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(tcp_name(h.addr("l")).await.unwrap());
    }
    assert!(seen.contains(&"b".to_string()), "{seen:?}");
}

#[tokio::test]
async fn health_is_carried_across_pool_changes_and_bad_monitors_are_refused() {
    let h = Harness::new();
    let mut events = h.dp.subscribe_health();
    let a = HttpBackend::start("a").await;
    a.status.store(500, Ordering::SeqCst);
    let kind = HealthMonitorKind::Http {
        method: "GET".into(),
        url_path: "/".into(),
        expected_codes: "200".into(),
    };
    let mut p = pool(
        "p",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("a", a.addr)],
    );
    p.health_monitor = Some(monitor(kind.clone(), 1, 1));
    let mut l = listener("l", ListenerProtocol::Http, Some(p.clone()));
    h.apply_ok(config(vec![l.clone()])).await;
    assert_eq!(next_event(&mut events, "a").await, OperatingStatus::Error);

    // Change the pool (algorithm): the member stays ERROR, no optimistic reset.
    p.lb_algorithm = LbAlgorithm::LeastConnections;
    l.default_pool = Some(p.clone());
    assert_eq!(
        h.apply_ok(config(vec![l.clone()])).await["l"],
        ListenerChange::Updated
    );
    assert_eq!(h.dp.member_health()["a"], OperatingStatus::Error);
    assert_eq!(get(&client(), h.addr("l"), "/", &[]).await.status, 503);

    // A bad monitor is refused; the running config keeps serving.
    let mut bad = p.clone();
    bad.health_monitor = Some(monitor(
        HealthMonitorKind::Http {
            method: "GET".into(),
            url_path: "/".into(),
            expected_codes: "2xx".into(),
        },
        1,
        1,
    ));
    let mut bad_l = l.clone();
    bad_l.default_pool = Some(bad);
    let res = h.dp.apply(config(vec![bad_l])).await;
    assert!(
        matches!(res[0].outcome, Err(DataplaneError::InvalidConfig { .. })),
        "{res:?}"
    );
    a.status.store(200, Ordering::SeqCst);
    assert_eq!(next_event(&mut events, "a").await, OperatingStatus::Online);
    assert_eq!(get(&client(), h.addr("l"), "/", &[]).await.body, "a");
}

/// Waits until `member` reports `status` (other members' changes may come in any order).
async fn wait_health(h: &Harness, member: &str, status: OperatingStatus) {
    wait_for(
        &format!("{member} {status:?}"),
        Duration::from_secs(10),
        || async { h.dp.member_health().get(member) == Some(&status) },
    )
    .await;
}

/// An HTTPS member with a self-signed certificate (rcgen): answers `status`
/// to every request, over TLS only.
async fn tls_backend() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU16>,
) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ck = rcgen::generate_simple_self_signed(vec!["member.invalid".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let l = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
    let st = status.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, st) = (acceptor.clone(), st.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| {
                    let mut resp =
                        hyper::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                    *resp.status_mut() =
                        hyper::StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, status)
}

fn https_kind() -> HealthMonitorKind {
    HealthMonitorKind::Https {
        method: "GET".into(),
        url_path: "/healthz".into(),
        expected_codes: "200".into(),
    }
}

#[tokio::test]
async fn https_monitor_checks_status_over_tls_without_verifying_the_certificate() {
    let h = Harness::new();
    let (tls_addr, status) = tls_backend().await;
    let plain = HttpBackend::start("plain").await;
    let mut p = pool(
        "p",
        PoolProtocol::Https,
        LbAlgorithm::RoundRobin,
        vec![member("tls", tls_addr), member("plain", plain.addr)],
    );
    p.health_monitor = Some(monitor(https_kind(), 1, 1));
    h.apply_ok(config(vec![listener(
        "l",
        ListenerProtocol::Https,
        Some(p),
    )]))
    .await;
    // Self-signed, wrong name: still ONLINE. Plain HTTP is no TLS server: ERROR.
    wait_health(&h, "tls", OperatingStatus::Online).await;
    wait_health(&h, "plain", OperatingStatus::Error).await;
    status.store(500, Ordering::SeqCst);
    wait_health(&h, "tls", OperatingStatus::Error).await;
    status.store(200, Ordering::SeqCst);
    wait_health(&h, "tls", OperatingStatus::Online).await;
}

#[tokio::test]
async fn tls_hello_monitor_needs_a_completed_handshake() {
    let h = Harness::new();
    let (tls_addr, status) = tls_backend().await;
    status.store(500, Ordering::SeqCst); // HTTP status is not looked at
    let tcp = TcpBackend::start("tcp").await; // accepts, but speaks no TLS
    let mut p = pool(
        "p",
        PoolProtocol::Https,
        LbAlgorithm::RoundRobin,
        vec![member("tls", tls_addr), member("tcp", tcp.addr)],
    );
    p.health_monitor = Some(monitor(HealthMonitorKind::TlsHello, 1, 1));
    h.apply_ok(config(vec![listener(
        "l",
        ListenerProtocol::Https,
        Some(p),
    )]))
    .await;
    wait_health(&h, "tls", OperatingStatus::Online).await;
    wait_health(&h, "tcp", OperatingStatus::Error).await;
}

#[tokio::test]
async fn udp_connect_monitor_sees_port_unreachable() {
    let h = Harness::new();
    // A UDP member that never answers (silence means up) and a closed port.
    let quiet = tokio::net::UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let closed = {
        let s = std::net::UdpSocket::bind((LOCALHOST, 0)).unwrap();
        s.local_addr().unwrap()
    };
    let mut p = pool(
        "p",
        PoolProtocol::Udp,
        LbAlgorithm::RoundRobin,
        vec![
            member("quiet", quiet.local_addr().unwrap()),
            member("closed", closed),
        ],
    );
    p.health_monitor = Some(monitor(HealthMonitorKind::UdpConnect, 1, 2));
    h.apply_ok(config(vec![listener("u", ListenerProtocol::Udp, Some(p))]))
        .await;
    wait_health(&h, "quiet", OperatingStatus::Online).await;
    wait_health(&h, "closed", OperatingStatus::Error).await;
    // The port opens: up again.
    let _open = tokio::net::UdpSocket::bind(closed).await.unwrap();
    wait_health(&h, "closed", OperatingStatus::Online).await;
}

#[tokio::test]
async fn ping_monitor_or_a_clear_unsupported_error() {
    let h = Harness::new();
    let mut p = pool(
        "p",
        PoolProtocol::Tcp,
        LbAlgorithm::RoundRobin,
        vec![
            member("local", "127.0.0.1:9".parse().unwrap()),
            // TEST-NET-2 (documentation): no echo reply comes back.
            member("nowhere", "198.51.100.1:9".parse().unwrap()),
        ],
    );
    let mut hm = monitor(HealthMonitorKind::Ping, 1, 1);
    hm.timeout = Duration::from_millis(200);
    p.health_monitor = Some(hm);
    let res =
        h.dp.apply(config(vec![listener("l", ListenerProtocol::Tcp, Some(p))]))
            .await;
    match &res[0].outcome {
        Ok(_) => {
            wait_health(&h, "local", OperatingStatus::Online).await;
            wait_health(&h, "nowhere", OperatingStatus::Error).await;
        }
        Err(e) => {
            // No ICMP socket on this host (neither ping_group_range nor CAP_NET_RAW).
            let msg = e.to_string();
            assert!(
                msg.contains("PING") && msg.contains("not supported"),
                "{msg}"
            );
            eprintln!("PING unsupported here: {msg}");
        }
    }
}
