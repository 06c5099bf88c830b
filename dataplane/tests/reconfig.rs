//! Hot reconfiguration: untouched listeners never notice; removed ones drain.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fulcrum_dataplane::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammering_a_while_b_is_reconfigured_many_times_loses_nothing() {
    // Two workers: listener sockets and routing swapped under both.
    let h = Arc::new(Harness::with_workers(2));
    let (a1, a2) = (
        HttpBackend::start("a1").await,
        HttpBackend::start("a2").await,
    );
    let (b1, b2) = (
        HttpBackend::start("b1").await,
        HttpBackend::start("b2").await,
    );
    let t1 = TcpBackend::start("t1").await;
    let pa = pool(
        "pa",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("a1", a1.addr), member("a2", a2.addr)],
    );
    let la = listener("A", ListenerProtocol::Http, Some(pa));
    let lt = listener(
        "T",
        ListenerProtocol::Tcp,
        Some(pool(
            "pt",
            PoolProtocol::Tcp,
            LbAlgorithm::RoundRobin,
            vec![member("t1", t1.addr)],
        )),
    );
    let lb = |i: usize| {
        let members = if i % 2 == 1 {
            vec![member("b2", b2.addr)]
        } else {
            vec![member("b1", b1.addr)]
        };
        let mut l = listener(
            "B",
            ListenerProtocol::Http,
            Some(pool(
                "pb",
                PoolProtocol::Http,
                LbAlgorithm::RoundRobin,
                members,
            )),
        );
        if i % 5 == 4 {
            l.protocol = ListenerProtocol::Tcp; // forces a rebind of B
        }
        l
    };
    h.apply_ok(config(vec![la.clone(), lt.clone(), lb(0)]))
        .await;
    let a_addr = h.addr("A");

    // A long-lived TCP connection on T must survive every apply.
    let (_, mut held) = tcp_open(h.addr("T")).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::builder()
                    .uri(format!("http://{a_addr}/"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match c.request(req).await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 1..=40 {
        // Interleave: let A serve some requests between applies.
        let seen = ok.load(Ordering::Relaxed);
        wait_for("traffic on A", Duration::from_secs(20), || async {
            ok.load(Ordering::Relaxed) >= seen + 5
        })
        .await;
        let changes = h
            .apply_ok(config(vec![la.clone(), lt.clone(), lb(i)]))
            .await;
        assert_eq!(changes["A"], ListenerChange::Unchanged);
        assert_eq!(changes["T"], ListenerChange::Unchanged);
        assert_ne!(changes["B"], ListenerChange::Unchanged);
    }
    let target = ok.load(Ordering::Relaxed) + 200;
    wait_for("traffic on A", Duration::from_secs(20), || async {
        ok.load(Ordering::Relaxed) >= target
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests on A ({} ok)",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(h.addr("A"), a_addr);

    held.get_mut().write_all(b"still here\n").await.unwrap();
    let mut line = String::new();
    held.read_line(&mut line).await.unwrap();
    assert_eq!(line, "still here\n");
}

#[tokio::test]
async fn removed_listener_stops_accepting_but_drains_its_connections() {
    let h = Harness::new();
    let t = TcpBackend::start("t").await;
    let l = listener(
        "L",
        ListenerProtocol::Tcp,
        Some(pool(
            "p",
            PoolProtocol::Tcp,
            LbAlgorithm::RoundRobin,
            vec![member("t", t.addr)],
        )),
    );
    h.apply_ok(config(vec![l])).await;
    let addr = h.addr("L");
    let (_, mut conn) = tcp_open(addr).await;

    let changes = h.apply_ok(config(vec![])).await;
    assert_eq!(changes["L"], ListenerChange::Removed);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "socket closed when apply returns"
    );
    assert!(h.dp.stats().is_empty());

    conn.get_mut().write_all(b"draining\n").await.unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    assert_eq!(line, "draining\n");
}

#[tokio::test]
async fn bind_failure_is_reported_per_listener() {
    let h = Harness::new();
    let taken = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let mut clash = listener("clash", ListenerProtocol::Tcp, None);
    clash.port = taken.local_addr().unwrap().port();
    let fine = listener("fine", ListenerProtocol::Tcp, None);
    let results = h.dp.apply(config(vec![clash, fine])).await;
    assert!(
        matches!(results[0].outcome, Err(DataplaneError::Bind { .. })),
        "{results:?}"
    );
    assert!(matches!(results[1].outcome, Ok(ListenerChange::Created)));
    assert!(h.dp.local_addr("clash").is_none());
}

#[tokio::test]
async fn shutdown_closes_listeners() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let dp = Dataplane::new(async move {
        let _ = rx.await;
    });
    dp.apply(config(vec![listener("L", ListenerProtocol::Tcp, None)]))
        .await[0]
        .outcome
        .as_ref()
        .unwrap();
    let addr = dp.local_addr("L").unwrap();
    tx.send(()).unwrap();
    wait_for("listener closed", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    let after = dp
        .apply(config(vec![listener("L", ListenerProtocol::Tcp, None)]))
        .await;
    assert!(matches!(after[0].outcome, Err(DataplaneError::ShutDown)));
}
