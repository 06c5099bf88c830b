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
