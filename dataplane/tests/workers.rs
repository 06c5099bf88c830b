//! Worker threads: every listener has one socket per worker (an
//! `SO_REUSEPORT` group) and the kernel spreads new connections and UDP
//! clients over them; a connection (or flow) is served on the worker that
//! accepted it. An address another
//! socket listens on is refused, whether or not that socket has
//! `SO_REUSEPORT` too.
//!
//! Which thread served a connection is read from its access log record (the
//! collecting layer notes the thread that logged it).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::access_records::{install, records};
use common::*;
use fulcrum_dataplane::*;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Connections opened one after the other: with two sockets in the group,
/// all of them landing on one has a chance of 2^-63.
const CONNS: usize = 64;

/// The threads that logged the records of `listener`, once there are `n`.
async fn threads_of(listener: &str, n: usize) -> BTreeSet<String> {
    wait_for(
        &format!("{n} records of {listener}"),
        Duration::from_secs(10),
        || async { records(listener).len() >= n },
    )
    .await;
    records(listener)
        .into_iter()
        .map(|r| r.get("thread").cloned().unwrap_or_default())
        .collect()
}

async fn http_get_close(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp))
        .await
        .expect("no hang")
        .unwrap();
    resp
}

#[tokio::test]
async fn connections_and_udp_flows_are_spread_over_every_worker() {
    install();
    let h = Harness::with_workers(2);
    h.dp.set_access_log(true);
    let web = HttpBackend::start("web").await;
    let t = TcpBackend::start("t").await;
    let echo = {
        let s = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let _ = s.send_to(&buf[..n], from).await;
            }
        });
        addr
    };
    let one = |id: &str, protocol, addr| {
        Some(pool(
            id,
            protocol,
            LbAlgorithm::RoundRobin,
            vec![member(&format!("{id}-m"), addr)],
        ))
    };
    let mut udp = listener(
        "w-udp",
        ListenerProtocol::Udp,
        one("w-udp-p", PoolProtocol::Udp, echo),
    );
    // Long enough that a flow outlives its client's two exchanges on a busy
    // machine; its record comes when it ends.
    udp.timeouts.client_data = Duration::from_secs(1);
    h.apply_ok(config(vec![
        listener(
            "w-http",
            ListenerProtocol::Http,
            one("w-http-p", PoolProtocol::Http, web.addr),
        ),
        listener(
            "w-tcp",
            ListenerProtocol::Tcp,
            one("w-tcp-p", PoolProtocol::Tcp, t.addr),
        ),
        udp,
    ]))
    .await;

    for _ in 0..CONNS {
        let resp = http_get_close(h.addr("w-http")).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("web"), "{resp}");
        assert_eq!(tcp_name(h.addr("w-tcp")).await.as_deref(), Some("t"));
    }
    let both: BTreeSet<String> = ["fulcrum-dp-0", "fulcrum-dp-1"].map(String::from).into();
    assert_eq!(threads_of("w-http", CONNS).await, both);
    assert_eq!(threads_of("w-tcp", CONNS).await, both);

    // UDP: a flow per client address, each on one worker; a client's
    // datagrams all reach its flow (one record per flow, when it ends).
    for _ in 0..CONNS {
        let c = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        for payload in [&b"ping"[..], b"pong"] {
            c.send_to(payload, h.addr("w-udp")).await.unwrap();
            let mut buf = [0u8; 16];
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut buf))
                .await
                .expect("echoed")
                .unwrap();
            assert_eq!(&buf[..n], payload);
        }
    }
    assert_eq!(threads_of("w-udp", CONNS).await, both);
    let records = records("w-udp");
    assert_eq!(records.len(), CONNS, "one flow per client");
    assert!(
        records
            .iter()
            .all(|r| r.get("bytes_in").map(String::as_str) == Some("8")),
        "both datagrams of each client in one flow"
    );
}

/// A listening socket with `SO_REUSEPORT`, as another program may open.
fn reuseport_listener() -> std::net::TcpListener {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddr::from((LOCALHOST, 0)).into()).unwrap();
    s.listen(16).unwrap();
    s.into()
}

#[tokio::test]
async fn an_address_in_use_is_refused_even_by_a_reuseport_socket() {
    let h = Harness::with_workers(2);
    let t = TcpBackend::start("t").await;
    let tcp_pool = || {
        Some(pool(
            "p",
            PoolProtocol::Tcp,
            LbAlgorithm::RoundRobin,
            vec![member("m", t.addr)],
        ))
    };

    // Another program's socket, SO_REUSEPORT set: joining its group would
    // hand it a share of the listener's connections.
    let foreign = reuseport_listener();
    let mut clash = listener("clash", ListenerProtocol::Tcp, tcp_pool());
    clash.port = foreign.local_addr().unwrap().port();
    let results = h.dp.apply(config(vec![clash])).await;
    assert!(
        matches!(results[0].outcome, Err(DataplaneError::Bind { .. })),
        "{results:?}"
    );
    assert!(h.dp.local_addr("clash").is_none());
    drop(foreign);

    // Two listeners of one config on one address: the second is refused
    // (HTTP and TCP listeners both take TCP sockets), the first serves alone.
    let first = listener("first", ListenerProtocol::Tcp, tcp_pool());
    h.apply_ok(config(vec![first.clone()])).await;
    let mut second = listener("second", ListenerProtocol::Http, None);
    second.port = h.addr("first").port();
    let results = h.dp.apply(config(vec![first, second])).await;
    assert!(matches!(results[0].outcome, Ok(ListenerChange::Unchanged)));
    assert!(
        matches!(results[1].outcome, Err(DataplaneError::Bind { .. })),
        "{results:?}"
    );
    for _ in 0..CONNS {
        assert_eq!(tcp_name(h.addr("first")).await.as_deref(), Some("t"));
    }
    assert_eq!(t.accepted.load(std::sync::atomic::Ordering::SeqCst), CONNS);
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind((LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_port_moves_between_listeners_and_protocols_with_two_workers() {
    let h = Harness::with_workers(2);
    let t = TcpBackend::start("t").await;
    let web = HttpBackend::start("web").await;
    let port = free_port();
    let tcp_pool = || {
        Some(pool(
            "p-tcp",
            PoolProtocol::Tcp,
            LbAlgorithm::RoundRobin,
            vec![member("m-tcp", t.addr)],
        ))
    };
    let http_pool = Some(pool(
        "p-http",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("m-http", web.addr)],
    ));
    let mut a = listener("a", ListenerProtocol::Tcp, tcp_pool());
    a.port = port;
    h.apply_ok(config(vec![a.clone()])).await;
    assert_eq!(h.addr("a").port(), port);
    assert_eq!(tcp_name(h.addr("a")).await.as_deref(), Some("t"));

    // The same listener, now HTTP: its group closes before the new one binds.
    a.protocol = ListenerProtocol::Http;
    a.default_pool = http_pool;
    let changes = h.apply_ok(config(vec![a.clone()])).await;
    assert_eq!(changes["a"], ListenerChange::Rebound);
    for _ in 0..CONNS {
        let resp = http_get_close(h.addr("a")).await;
        assert!(resp.ends_with("web"), "{resp}");
    }

    // Another listener takes the port in the apply that removes the first.
    let mut b = listener("b", ListenerProtocol::Tcp, tcp_pool());
    b.port = port;
    let changes = h.apply_ok(config(vec![b])).await;
    assert_eq!(
        (changes["a"], changes["b"]),
        (ListenerChange::Removed, ListenerChange::Created)
    );
    for _ in 0..CONNS {
        assert_eq!(tcp_name(h.addr("b")).await.as_deref(), Some("t"));
    }
}

#[tokio::test]
async fn dropping_the_data_plane_closes_its_sockets_and_connections() {
    let h = Harness::with_workers(2);
    let t = TcpBackend::start("t").await;
    let l = listener(
        "l",
        ListenerProtocol::Tcp,
        Some(pool(
            "p",
            PoolProtocol::Tcp,
            LbAlgorithm::RoundRobin,
            vec![member("m", t.addr)],
        )),
    );
    h.apply_ok(config(vec![l])).await;
    let addr = h.addr("l");
    let (name, mut open) = tcp_open(addr).await;
    assert_eq!(name, "t");

    // No shutdown, no drain: the last handle goes, and the workers with it.
    drop(h);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the proxied connection is cut: {read:?}"
    );
    wait_for("the port to be free", Duration::from_secs(5), || async {
        std::net::TcpListener::bind(addr).is_ok()
    })
    .await;
}
