//! 64 concurrent writers on a 3-node loopback cluster, spread over all nodes (so two thirds
//! of the writes are forwarded): every write is acknowledged and applied on every node. The
//! rate and latencies are printed (`--nocapture`), never asserted: speed belongs to the
//! benchmark (bench/control.sh), not to a timed test.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_writers_are_all_applied_everywhere() {
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

    const WRITES_PER_CLIENT: u64 = 15;
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
            while i < WRITES_PER_CLIENT {
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
    assert_eq!(n as u64, 64 * WRITES_PER_CLIENT);
    for node in &nodes {
        let last: Vec<Option<String>> = node
            .node
            .read_linearizable(|kv| {
                (0..64)
                    .map(|c| kv.map.get(&format!("c{c}")).cloned())
                    .collect()
            })
            .await
            .expect("linearizable read");
        for (c, v) in last.iter().enumerate() {
            assert_eq!(
                v.as_deref(),
                Some("14"),
                "client {c} on node {}",
                node.node.node_id()
            );
        }
    }
    for n in &mut nodes {
        n.kill().await;
    }
}
