//! Throughput check: 64 concurrent writers on a 3-node loopback cluster, spread over all
//! nodes (so two thirds of the writes are forwarded). Target: >= 2,000 acknowledged writes/s
//! and p99 < 50 ms. Ignored by default (timing-sensitive); run with
//! `cargo test -p fulcrum-raft --release --test throughput -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_64_clients_3_nodes() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let (l, addr) = bind().await;
        members.insert(id, addr);
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        nodes.push(TestNode::start(config(id, dir.path(), &members[&id], &members), l).await);
    }
    nodes[0].node.initialize_if_fresh().await.expect("init");
    wait_leader(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(20)).await;

    let run_for = Duration::from_secs(
        std::env::var("FULCRUM_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let handles: Vec<_> = nodes.iter().map(|n| n.node.clone()).collect();
    let handles = Arc::new(handles);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..64usize {
        let handles = handles.clone();
        tasks.push(tokio::spawn(async move {
            let node = &handles[c % handles.len()];
            let mut lat = Vec::new();
            let mut i = 0u64;
            while start.elapsed() < run_for {
                let t = Instant::now();
                node.write(format!("set c{c} {i}").into_bytes())
                    .await
                    .expect("write");
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    lat.sort();
    let n = lat.len();
    let p = |q: f64| lat[((n as f64 * q) as usize).min(n - 1)];
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{n} writes in {elapsed:?}: {rate:.0} writes/s, p50 {:?}, p99 {:?}, max {:?}",
        p(0.50),
        p(0.99),
        lat[n - 1]
    );
    for n in &mut nodes {
        n.kill().await;
    }
    assert!(rate >= 2000.0, "throughput {rate:.0}/s below 2000/s");
    assert!(
        p(0.99) < Duration::from_millis(50),
        "p99 {:?} >= 50 ms",
        p(0.99)
    );
}
