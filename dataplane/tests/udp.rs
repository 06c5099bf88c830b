//! UDP listeners: per-client flows, balancing per flow, idle expiry.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use fulcrum_dataplane::*;
use tokio::net::UdpSocket;

/// A UDP member that answers `<name>:<payload>`.
async fn udp_backend(name: &'static str) -> SocketAddr {
    let s = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let reply = format!("{name}:{}", String::from_utf8_lossy(&buf[..n]));
            let _ = s.send_to(reply.as_bytes(), from).await;
        }
    });
    addr
}

async fn ask(client: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    client.send_to(msg.as_bytes(), to).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
        .await
        .expect("reply")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into()
}

#[tokio::test]
async fn flows_are_balanced_sticky_and_expire() {
    let h = Harness::new();
    let (a, b) = (udp_backend("a").await, udp_backend("b").await);
    let p = pool(
        "p",
        PoolProtocol::Udp,
        LbAlgorithm::RoundRobin,
        vec![member("a", a), member("b", b)],
    );
    let mut l = listener("u", ListenerProtocol::Udp, Some(p));
    l.timeouts.client_data = Duration::from_millis(300);
    h.apply_ok(config(vec![l])).await;
    let vip = h.addr("u");

    let c1 = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let c2 = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let r1 = ask(&c1, vip, "x").await;
    let r2 = ask(&c2, vip, "y").await;
    assert_eq!([&r1[..2], &r2[..2]], ["a:", "b:"]);
    assert_eq!(r1, "a:x");
    // Same client, same flow, same member.
    for i in 0..3 {
        assert_eq!(ask(&c1, vip, &i.to_string()).await, format!("a:{i}"));
    }
    let s = h.dp.stats()["u"];
    assert_eq!((s.total_connections, s.active_connections), (2, 2));
    assert_eq!(s.bytes_in, 5);
    wait_for("flows expire", Duration::from_secs(5), || async {
        h.dp.stats()["u"].active_connections == 0
    })
    .await;
}

#[tokio::test]
async fn source_ip_persistence_outlives_flows_for_its_timeout() {
    let h = Harness::new();
    let (a, b) = (udp_backend("a").await, udp_backend("b").await);
    let mut p = pool(
        "p",
        PoolProtocol::Udp,
        LbAlgorithm::RoundRobin,
        vec![member("a", a), member("b", b)],
    );
    let timeout = Duration::from_millis(300);
    p.session_persistence = Some(SessionPersistence::SourceIp {
        timeout: Some(timeout),
        granularity: Some("255.255.255.0".parse().unwrap()),
    });
    let mut l = listener("u", ListenerProtocol::Udp, Some(p));
    l.timeouts.client_data = Duration::from_millis(100);
    h.apply_ok(config(vec![l])).await;
    let vip = h.addr("u");

    // Different client ports (different flows), same /24: same member, though
    // round robin alone would alternate.
    let mut got = Vec::new();
    for i in 0..4 {
        let c = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        got.push(ask(&c, vip, &i.to_string()).await[..1].to_string());
    }
    assert_eq!(got, ["a"; 4]);
    wait_for("flows expire", Duration::from_secs(5), || async {
        h.dp.stats()["u"].active_connections == 0
    })
    .await;
    // Within the persistence timeout of the last flow: still stuck.
    let c = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    assert_eq!(ask(&c, vip, "again").await, "a:again");
    wait_for("flows expire", Duration::from_secs(5), || async {
        h.dp.stats()["u"].active_connections == 0
    })
    .await;
    // Past it (time itself is the condition here), round robin picks again: b.
    tokio::time::sleep(timeout + Duration::from_millis(100)).await;
    let c = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    assert_eq!(ask(&c, vip, "later").await, "b:later");
}

#[tokio::test]
async fn proxy_pool_on_a_udp_listener_is_refused_and_the_old_config_keeps_serving() {
    let h = Harness::new();
    let a = udp_backend("a").await;
    let good = listener(
        "u",
        ListenerProtocol::Udp,
        Some(pool(
            "p",
            PoolProtocol::Udp,
            LbAlgorithm::RoundRobin,
            vec![member("a", a)],
        )),
    );
    h.apply_ok(config(vec![good.clone()])).await;
    let mut bad = good.clone();
    bad.default_pool.as_mut().unwrap().protocol = PoolProtocol::ProxyV2;
    let results = h.dp.apply(config(vec![bad])).await;
    match &results[0].outcome {
        Err(DataplaneError::InvalidConfig { field, reason }) => {
            assert_eq!(*field, "pool.protocol");
            assert!(
                reason.contains("pool p") && reason.contains("UDP"),
                "{reason}"
            );
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let c = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    assert_eq!(ask(&c, h.addr("u"), "still").await, "a:still");
}

/// A UDP member that answers `<size>` with one datagram of that many bytes
/// (a repeating pattern), and `burst <count>` with that many datagrams
/// `0`, `1`, ... in order.
async fn sizing_backend() -> SocketAddr {
    let s = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let ask = String::from_utf8_lossy(&buf[..n]).into_owned();
            let replies: Vec<Vec<u8>> = match ask.strip_prefix("burst ") {
                Some(count) => (0..count.parse::<usize>().unwrap())
                    .map(|i| i.to_string().into_bytes())
                    .collect(),
                None => vec![pattern(ask.parse().unwrap())],
            };
            for r in replies {
                let _ = s.send_to(&r, from).await;
            }
        }
    });
    addr
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Member datagrams reach the client whole, from one byte to the largest
/// IPv4 UDP payload, and a burst longer than one wake-up's batch arrives
/// complete and in order; `bytes_out` counts every byte.
#[tokio::test]
async fn member_datagrams_of_every_size_and_bursts_arrive_whole() {
    let h = Harness::new();
    let m = sizing_backend().await;
    let p = pool(
        "p",
        PoolProtocol::Udp,
        LbAlgorithm::RoundRobin,
        vec![member("m", m)],
    );
    h.apply_ok(config(vec![listener("u", ListenerProtocol::Udp, Some(p))]))
        .await;
    let vip = h.addr("u");
    let client = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut expected_out = 0;
    for size in [1usize, 1472, 9000, 65_507] {
        client
            .send_to(size.to_string().as_bytes(), vip)
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("a reply")
            .unwrap();
        assert_eq!(n, size);
        assert!(
            buf[..n] == pattern(size)[..],
            "the {size}-byte datagram changed"
        );
        expected_out += size as u64;
    }
    client.send_to(b"burst 200", vip).await.unwrap();
    for i in 0..200 {
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("every datagram of the burst")
            .unwrap();
        assert_eq!(&buf[..n], i.to_string().as_bytes());
        expected_out += n as u64;
    }
    // Counted just after each send, so possibly a moment after the client has it.
    wait_for(
        "bytes_out counts every byte",
        Duration::from_secs(5),
        || async { h.dp.stats()["u"].bytes_out == expected_out },
    )
    .await;
}

#[tokio::test]
async fn a_udp_address_in_use_is_refused() {
    for workers in [1, 2] {
        udp_address_in_use_is_refused_with(workers).await;
    }
}

async fn udp_address_in_use_is_refused_with(workers: usize) {
    let h = Harness::with_workers(workers);
    let m = udp_backend("m").await;
    let udp = |id: &str| {
        listener(
            id,
            ListenerProtocol::Udp,
            Some(pool(
                "p",
                PoolProtocol::Udp,
                LbAlgorithm::RoundRobin,
                vec![member("m", m)],
            )),
        )
    };
    h.apply_ok(config(vec![udp("first")])).await;
    let addr = h.addr("first");

    // A second listener of the config on the same address.
    let mut second = udp("second");
    second.port = addr.port();
    let results = h.dp.apply(config(vec![udp("first"), second])).await;
    assert!(matches!(results[0].outcome, Ok(ListenerChange::Unchanged)));
    assert!(
        matches!(results[1].outcome, Err(DataplaneError::Bind { .. })),
        "{results:?}"
    );
    // Another program's socket on the address, SO_REUSEADDR and
    // SO_REUSEPORT set.
    let foreign = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    foreign.set_reuse_address(true).unwrap();
    foreign.set_reuse_port(true).unwrap();
    foreign
        .bind(&SocketAddr::from((LOCALHOST, 0)).into())
        .unwrap();
    let mut clash = udp("clash");
    clash.port = foreign.local_addr().unwrap().as_socket().unwrap().port();
    let results = h.dp.apply(config(vec![udp("first"), clash])).await;
    assert!(
        matches!(results[1].outcome, Err(DataplaneError::Bind { .. })),
        "{results:?}"
    );

    // The first listener alone gets the datagrams.
    let c = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    assert_eq!(ask(&c, addr, "x").await, "m:x");
}

#[tokio::test]
async fn a_udp_port_moves_to_another_listener_while_flows_are_open() {
    // The old listener's flows hold its socket until they are gone; the new
    // one binds the port as soon as `apply` has closed the old one.
    for workers in [1, 2] {
        let h = Harness::with_workers(workers);
        let members = [("a", udp_backend("a").await), ("b", udp_backend("b").await)];
        let udp = |id: &str, port: u16, m: SocketAddr| {
            let mut l = listener(
                id,
                ListenerProtocol::Udp,
                Some(pool(
                    &format!("p-{id}"),
                    PoolProtocol::Udp,
                    LbAlgorithm::RoundRobin,
                    vec![member(&format!("m-{id}"), m)],
                )),
            );
            l.port = port;
            l
        };
        h.apply_ok(config(vec![udp("u0", 0, members[0].1)])).await;
        let addr = h.addr("u0");
        for round in 1..=10 {
            // Flows open (idle for a minute by default) on the listener
            // that goes, as the next one takes its port.
            let mut clients = Vec::new();
            for _ in 0..8 {
                let c = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
                assert!(ask(&c, addr, "x").await.ends_with(":x"));
                clients.push(c);
            }
            let (old, new) = (format!("u{}", round - 1), format!("u{round}"));
            let (name, m) = members[round % 2];
            let changes = h.apply_ok(config(vec![udp(&new, addr.port(), m)])).await;
            assert_eq!(changes[&old], ListenerChange::Removed);
            assert_eq!(changes[&new], ListenerChange::Created);
            for c in &clients {
                assert_eq!(
                    ask(c, addr, "y").await,
                    format!("{name}:y"),
                    "{workers} workers, round {round}"
                );
            }
        }
    }
}

/// At the connection limit, a new client's flow takes the place of the
/// oldest flow that has not settled (clients that sent once or twice at
/// once, from spoofed addresses maybe, even though their member answered); a
/// flow whose client still sends 2 s after it began is kept, and with only
/// such flows the new client is refused.
#[tokio::test]
async fn at_the_limit_flows_not_settled_make_room_for_new_clients() {
    let h = Harness::new();
    let m = udp_backend("m").await; // answers every datagram
    let p = pool(
        "p",
        PoolProtocol::Udp,
        LbAlgorithm::RoundRobin,
        vec![member("m", m)],
    );
    let mut l = listener("u", ListenerProtocol::Udp, Some(p));
    l.connection_limit = Some(3);
    h.apply_ok(config(vec![l])).await;
    let vip = h.addr("u");
    let client = || async { UdpSocket::bind((LOCALHOST, 0)).await.unwrap() };
    let settle = Duration::from_millis(2_100);

    let steady = client().await;
    assert_eq!(ask(&steady, vip, "a").await, "m:a");
    tokio::time::sleep(settle).await;
    assert_eq!(ask(&steady, vip, "b").await, "m:b", "settled now");
    // One client asks once, one twice at once: neither has settled.
    let once = [client().await, client().await];
    for (i, c) in once.iter().enumerate() {
        assert_eq!(
            ask(c, vip, &format!("once {i}")).await,
            format!("m:once {i}")
        );
    }
    assert_eq!(ask(&once[1], vip, "twice").await, "m:twice");
    assert_eq!(h.dp.stats()["u"].active_connections, 3);

    // Two new clients, each taking the place of a one-datagram client.
    let newcomers = [client().await, client().await];
    for (i, c) in newcomers.iter().enumerate() {
        assert_eq!(ask(c, vip, &format!("new {i}")).await, format!("m:new {i}"));
    }
    assert_eq!(ask(&steady, vip, "c").await, "m:c", "kept");
    let s = h.dp.stats()["u"];
    assert_eq!(
        (s.active_connections, s.total_connections, s.request_errors),
        (3, 5, 0)
    );

    // Every flow settled: a further client is refused.
    tokio::time::sleep(settle).await;
    for c in &newcomers {
        assert_eq!(ask(c, vip, "again").await, "m:again");
    }
    let refused = client().await;
    refused.send_to(b"r", vip).await.unwrap();
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_millis(300), refused.recv(&mut buf)).await;
    assert!(got.is_err(), "no flow, no answer: {got:?}");
    let s = h.dp.stats()["u"];
    assert_eq!((s.active_connections, s.request_errors), (3, 1));
}
