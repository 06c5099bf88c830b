//! L4 proxy, end to end with real sockets and real backends.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use fulcrum_dataplane::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A round-robin TCP pool `p` with `b` as its only member.
fn one_member_pool(b: &TcpBackend) -> PoolConfig {
    pool(
        "p",
        PoolProtocol::Tcp,
        LbAlgorithm::RoundRobin,
        vec![member(&b.name, b.addr)],
    )
}

async fn names(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(tcp_name(addr).await.expect("served"));
    }
    out
}

#[tokio::test]
async fn weighted_round_robin_through_the_proxy() {
    let h = Harness::new();
    let (a, b, c) = (
        TcpBackend::start("a").await,
        TcpBackend::start("b").await,
        TcpBackend::start("c").await,
    );
    let mut ma = member("a", a.addr);
    ma.weight = 2;
    let p = pool(
        "p",
        PoolProtocol::Tcp,
        LbAlgorithm::RoundRobin,
        vec![ma, member("b", b.addr), member("c", c.addr)],
    );
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Tcp, Some(p))]))
        .await;
    assert_eq!(
        names(h.addr("l"), 8).await,
        ["a", "b", "c", "a", "a", "b", "c", "a"]
    );
}

#[tokio::test]
async fn drained_disabled_and_backup_members() {
    let h = Harness::new();
    let (a, b, c) = (
        TcpBackend::start("a").await,
        TcpBackend::start("b").await,
        TcpBackend::start("c").await,
    );
    let mut drained = member("a", a.addr);
    drained.weight = 0;
    let mut down = member("b", b.addr);
    down.admin_state_up = false;
    let mut backup = member("c", c.addr);
    backup.backup = true;
    let p = pool(
        "p",
        PoolProtocol::Tcp,
        LbAlgorithm::RoundRobin,
        vec![drained, down, backup],
    );
    let mut l = listener("l", ListenerProtocol::Tcp, Some(p.clone()));
    h.apply_ok(config(vec![l.clone()])).await;
    let addr = h.addr("l");
    assert_eq!(names(addr, 4).await, ["c"; 4]);
    assert_eq!(h.dp.member_health()["a"], OperatingStatus::Draining);
    assert_eq!(h.dp.member_health()["b"], OperatingStatus::Offline);

    // Undrain a: the primary takes over, the backup idles; swapped in place.
    let mut p2 = p.clone();
    p2.members[0].weight = 1;
    l.default_pool = Some(p2);
    let changes = h.apply_ok(config(vec![l.clone()])).await;
    assert_eq!(changes["l"], ListenerChange::Updated);
    assert_eq!(h.addr("l"), addr);
    assert_eq!(names(addr, 3).await, ["a"; 3]);

    // Listener admin down: connections are closed.
    l.admin_state_up = false;
    h.apply_ok(config(vec![l])).await;
    assert!(tcp_closed(addr).await);
}

#[tokio::test]
async fn no_usable_member_closes_the_connection_and_counts_an_error() {
    let h = Harness::new();
    let p = pool("p", PoolProtocol::Tcp, LbAlgorithm::RoundRobin, vec![]);
    h.apply_ok(config(vec![
        listener("l", ListenerProtocol::Tcp, Some(p)),
        listener("nopool", ListenerProtocol::Tcp, None),
    ]))
    .await;
    assert!(tcp_closed(h.addr("l")).await);
    assert!(tcp_closed(h.addr("nopool")).await);
    wait_for("errors counted", Duration::from_secs(5), || async {
        h.dp.stats()["l"].request_errors == 1
    })
    .await;
}

#[tokio::test]
async fn dead_member_is_retried_on_another() {
    let h = Harness::new();
    let a = TcpBackend::start("a").await;
    let (dead, _dead) = refusing_addr();
    let p = pool(
        "p",
        PoolProtocol::Tcp,
        LbAlgorithm::RoundRobin,
        vec![member("dead", dead), member("a", a.addr)],
    );
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Tcp, Some(p))]))
        .await;
    assert_eq!(names(h.addr("l"), 4).await, ["a"; 4]);
}

#[tokio::test]
async fn source_ip_sticks_and_least_connections_spreads() {
    let h = Harness::new();
    let backends: Vec<_> = futures_join(["a", "b", "c"]).await;
    let members = || {
        backends
            .iter()
            .map(|b| member(&b.name, b.addr))
            .collect::<Vec<_>>()
    };
    let sticky = pool(
        "sticky",
        PoolProtocol::Tcp,
        LbAlgorithm::SourceIp,
        members(),
    );
    let lc = pool(
        "lc",
        PoolProtocol::Tcp,
        LbAlgorithm::LeastConnections,
        members(),
    );
    h.apply_ok(config(vec![
        listener("s", ListenerProtocol::Tcp, Some(sticky)),
        listener("lc", ListenerProtocol::Tcp, Some(lc)),
    ]))
    .await;
    let got = names(h.addr("s"), 6).await;
    assert!(got.iter().all(|n| *n == got[0]), "{got:?}");

    // Hold connections open: each new one goes to an idle member.
    let (n1, _c1) = tcp_open(h.addr("lc")).await;
    let (n2, _c2) = tcp_open(h.addr("lc")).await;
    let (n3, _c3) = tcp_open(h.addr("lc")).await;
    let mut all = vec![n1, n2, n3];
    all.sort();
    assert_eq!(all, ["a", "b", "c"]);
}

async fn futures_join<const N: usize>(names: [&str; N]) -> Vec<TcpBackend> {
    let mut out = Vec::new();
    for n in names {
        out.push(TcpBackend::start(n).await);
    }
    out
}

#[tokio::test]
async fn allowed_cidrs_and_connection_limit() {
    let h = Harness::new();
    let a = TcpBackend::start("a").await;
    let p = one_member_pool(&a);
    let mut fenced = listener("fenced", ListenerProtocol::Tcp, Some(p.clone()));
    fenced.allowed_cidrs = vec!["10.0.0.0/8".parse().unwrap()];
    let mut open = listener("open", ListenerProtocol::Tcp, Some(p.clone()));
    open.allowed_cidrs = vec![
        "10.0.0.0/8".parse().unwrap(),
        "127.0.0.0/8".parse().unwrap(),
    ];
    let mut limited = listener("limited", ListenerProtocol::Tcp, Some(p));
    limited.connection_limit = Some(1);
    h.apply_ok(config(vec![fenced, open, limited])).await;
    assert!(tcp_closed(h.addr("fenced")).await);
    assert_eq!(tcp_name(h.addr("open")).await.as_deref(), Some("a"));

    let (_, held) = tcp_open(h.addr("limited")).await;
    assert!(tcp_closed(h.addr("limited")).await);
    drop(held);
    wait_for("slot freed", Duration::from_secs(5), || async {
        h.dp.stats()["limited"].active_connections == 0
    })
    .await;
    assert_eq!(tcp_name(h.addr("limited")).await.as_deref(), Some("a"));
}

#[tokio::test]
async fn connection_limit_holds_when_workers_admit_at_once() {
    let h = Harness::with_workers(2);
    let a = TcpBackend::start("a").await;
    let mut limited = listener("limited", ListenerProtocol::Tcp, Some(one_member_pool(&a)));
    limited.connection_limit = Some(5);
    h.apply_ok(config(vec![limited])).await;
    let addr = h.addr("limited");
    // 40 clients at once, each keeping its connection open if served.
    let tries: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                let s = TcpStream::connect(addr).await.unwrap();
                let mut r = tokio::io::BufReader::new(s);
                let mut line = String::new();
                let n = tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
                    .await
                    .expect("no hang")
                    .unwrap_or(0);
                (n > 0).then_some(r)
            })
        })
        .collect();
    let mut served = Vec::new();
    for t in tries {
        served.extend(t.await.unwrap());
    }
    assert_eq!(served.len(), 5, "exactly the limit is served");
    assert_eq!(a.accepted.load(Ordering::SeqCst), 5);
    let s = h.dp.stats()["limited"];
    assert_eq!((s.active_connections, s.request_errors), (5, 35), "{s:?}");
}

#[tokio::test]
async fn proxy_protocol_headers_reach_the_member() {
    let h = Harness::new();
    // A member that reports the first line it receives.
    let l = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let maddr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(s);
                let mut first = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_buf(&mut r, &mut first).await;
                let _ = r
                    .get_mut()
                    .write_all(
                        format!("{}\n", String::from_utf8_lossy(&first).escape_default())
                            .as_bytes(),
                    )
                    .await;
            });
        }
    });
    let v1 = pool(
        "v1",
        PoolProtocol::Proxy,
        LbAlgorithm::RoundRobin,
        vec![member("m1", maddr)],
    );
    let v2 = pool(
        "v2",
        PoolProtocol::ProxyV2,
        LbAlgorithm::RoundRobin,
        vec![member("m2", maddr)],
    );
    h.apply_ok(config(vec![
        listener("l1", ListenerProtocol::Tcp, Some(v1)),
        listener("l2", ListenerProtocol::Tcp, Some(v2)),
    ]))
    .await;

    let mut s = tokio::net::TcpStream::connect(h.addr("l1")).await.unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(&mut s)
        .read_line(&mut line)
        .await
        .unwrap();
    let expect = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\\r\\n",
        local.port(),
        h.addr("l1").port()
    );
    assert!(line.starts_with(&expect), "{line:?} vs {expect:?}");

    let mut s = tokio::net::TcpStream::connect(h.addr("l2")).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(&mut s)
        .read_line(&mut line)
        .await
        .unwrap();
    assert!(
        line.starts_with("\\r\\n\\r\\n\\u{0}\\r\\nQUIT\\n!\\u{11}\\u{0}\\u{c}"),
        "{line:?}"
    );
}

#[tokio::test]
async fn stats_count_bytes_and_connections() {
    let h = Harness::new();
    let a = TcpBackend::start("a").await;
    let p = one_member_pool(&a);
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Tcp, Some(p))]))
        .await;
    let (name, mut conn) = tcp_open(h.addr("l")).await;
    assert_eq!(name, "a");
    conn.get_mut().write_all(b"ping\n").await.unwrap();
    let mut echo = String::new();
    conn.read_line(&mut echo).await.unwrap();
    assert_eq!(echo, "ping\n");
    let s = h.dp.stats()["l"];
    assert_eq!((s.active_connections, s.total_connections), (1, 1));
    assert_eq!((s.bytes_in, s.bytes_out), (5, 7));
    drop(conn);
    wait_for("connection closed", Duration::from_secs(5), || async {
        h.dp.stats()["l"].active_connections == 0
    })
    .await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let h = Harness::new();
    let a = TcpBackend::start("a").await;
    let p = one_member_pool(&a);
    let mut l = listener("l", ListenerProtocol::Tcp, Some(p));
    l.timeouts.client_data = Duration::from_millis(200);
    h.apply_ok(config(vec![l])).await;
    let (_, mut conn) = tcp_open(h.addr("l")).await;
    let mut rest = String::new();
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read_line(&mut rest))
        .await
        .expect("closed by idle timeout")
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn source_ip_persistence_sticks_round_robin_clients_until_the_member_fails() {
    let h = Harness::new();
    let backends: Vec<_> = futures_join(["a", "b"]).await;
    let mut p = pool(
        "p",
        PoolProtocol::Tcp,
        LbAlgorithm::RoundRobin,
        backends.iter().map(|b| member(&b.name, b.addr)).collect(),
    );
    p.session_persistence = Some(SessionPersistence::SOURCE_IP);
    let mut l = listener("l", ListenerProtocol::Tcp, Some(p.clone()));
    h.apply_ok(config(vec![l.clone()])).await;
    // Round robin would alternate; the stick table keeps 127.0.0.1 on one member.
    let got = names(h.addr("l"), 6).await;
    assert!(got.iter().all(|n| *n == got[0]), "{got:?}");
    // The member disappears: the client moves, and stays, on the other one.
    let stuck = got[0].clone();
    let other = if stuck == "a" { "b" } else { "a" };
    let dead = backends.iter().find(|b| b.name == stuck).unwrap();
    dead.stop();
    wait_for("member closed", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(dead.addr).await.is_err()
    })
    .await;
    let got = names(h.addr("l"), 4).await;
    assert_eq!(got, [other; 4]);
    assert_eq!(
        h.dp.stats()["l"].member_errors,
        1,
        "one failed connect, then stuck elsewhere"
    );
    // A pool change that keeps the persistence settings keeps the table.
    p.members[0].weight = 2;
    l.default_pool = Some(p);
    assert_eq!(
        h.apply_ok(config(vec![l])).await["l"],
        ListenerChange::Updated
    );
    assert_eq!(names(h.addr("l"), 3).await, [other; 3]);
}

#[tokio::test]
async fn bulk_transfers_are_spliced_counted_and_half_closed() {
    use tokio::io::AsyncReadExt;
    let h = Harness::new();
    let a = TcpBackend::start("a").await;
    let p = one_member_pool(&a);
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Tcp, Some(p))]))
        .await;
    // 4 MiB of a non-repeating pattern, sent while the echo is read back.
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (name, conn) = tcp_open(h.addr("l")).await;
    assert_eq!(name, "a");
    let (mut r, mut w) = conn.into_inner().into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        // Half-close: the member sees EOF, ends its echo, and closes.
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut back))
        .await
        .expect("no hang")
        .unwrap();
    let _w = writer.await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
    let s = h.dp.stats()["l"];
    assert_eq!(s.bytes_in, data.len() as u64);
    assert_eq!(s.bytes_out, data.len() as u64 + 2); // + "a\n"
}

async fn read_line(r: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> String {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .expect("no hang")
        .unwrap();
    line
}

#[tokio::test]
async fn tcp_inspect_holds_silent_clients_back_from_members() {
    use std::sync::atomic::Ordering;
    let h = Harness::new();
    let a = TcpBackend::start("a").await;
    let mut l = listener("inspect", ListenerProtocol::Tcp, Some(one_member_pool(&a)));
    l.timeouts.tcp_inspect = Duration::from_secs(60);
    h.apply_ok(config(vec![l.clone()])).await;
    let vip = h.addr("inspect");
    // A client that says nothing is held; one that speaks goes through at once.
    let mut silent = tokio::io::BufReader::new(tokio::net::TcpStream::connect(vip).await.unwrap());
    let mut talker = tokio::io::BufReader::new(tokio::net::TcpStream::connect(vip).await.unwrap());
    talker.get_mut().write_all(b"hi\n").await.unwrap();
    assert_eq!(read_line(&mut talker).await, "a\n");
    assert_eq!(read_line(&mut talker).await, "hi\n");
    wait_for("both admitted", Duration::from_secs(5), || async {
        h.dp.stats()["inspect"].active_connections == 2
    })
    .await;
    assert_eq!(a.accepted.load(Ordering::SeqCst), 1, "only the talker");

    // A client that leaves during inspection never reaches a member.
    drop(tokio::net::TcpStream::connect(vip).await.unwrap());
    wait_for("the quitter is gone", Duration::from_secs(5), || async {
        let s = h.dp.stats()["inspect"];
        (s.total_connections, s.active_connections) == (3, 2)
    })
    .await;
    assert_eq!(a.accepted.load(Ordering::SeqCst), 1);

    // The silent client speaks: now it reaches the member, its bytes intact.
    silent.get_mut().write_all(b"late\n").await.unwrap();
    assert_eq!(read_line(&mut silent).await, "a\n");
    assert_eq!(read_line(&mut silent).await, "late\n");
    assert_eq!(a.accepted.load(Ordering::SeqCst), 2);

    // With a short delay, a client that never speaks reaches the member once
    // it has passed (a server-speaks-first protocol gets its greeting late).
    l.timeouts.tcp_inspect = Duration::from_millis(200);
    assert_eq!(
        h.apply_ok(config(vec![l])).await["inspect"],
        ListenerChange::Updated
    );
    let started = std::time::Instant::now();
    assert_eq!(tcp_name(vip).await.as_deref(), Some("a"));
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(a.accepted.load(Ordering::SeqCst), 3);
}
