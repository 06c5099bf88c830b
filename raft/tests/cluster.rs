//! Real RocksDB in temp dirs, real gRPC over loopback.

mod common;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use fulcrum_raft::RaftError;
use fulcrum_raft::RaftNode;
use fulcrum_raft::Role;

const T: Duration = Duration::from_secs(20);

fn get(n: &TestNode, k: &str) -> Option<String> {
    n.node.read_local(|kv| kv.map.get(k).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_write_restart_restores_state() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (l, addr) = bind().await;
    let members = BTreeMap::from([(1, addr.clone())]);
    let cfg = config(1, dir.path(), &addr, &members);
    let mut n = TestNode::start(cfg.clone(), l).await;
    n.node.initialize_if_fresh().await.expect("init");
    n.node
        .initialize_if_fresh()
        .await
        .expect("init is idempotent");

    assert_eq!(n.node.write(b"set a 1".to_vec()).await.expect("w1"), b"");
    assert_eq!(n.node.write(b"set a 2".to_vec()).await.expect("w2"), b"1");
    n.node.write(b"set b x".to_vec()).await.expect("w3");
    assert_eq!(n.node.write(b"del b".to_vec()).await.expect("w4"), b"x");
    assert_eq!(
        n.node.write(b"bogus".to_vec()).await.expect("w5"),
        b"ERR malformed"
    );
    let v = n
        .node
        .read_linearizable(|kv| kv.map.clone())
        .await
        .expect("read");
    assert_eq!(v, BTreeMap::from([("a".to_string(), "2".to_string())]));
    let applied = *n.node.applied_index().borrow();
    assert!(applied >= 6, "applied {applied}");
    let st = n.node.status();
    assert_eq!(st.role, Role::Leader);
    assert_eq!(st.voters, members);
    n.kill().await;

    // Restart from disk: state and applied index come back before any election.
    let mut n = TestNode::restart(cfg).await;
    assert_eq!(get(&n, "a").as_deref(), Some("2"));
    assert_eq!(get(&n, "b"), None);
    assert!(*n.node.applied_index().borrow() >= applied);
    n.node
        .initialize_if_fresh()
        .await
        .expect("re-init is a no-op");
    assert_eq!(
        n.node
            .write(b"set c 3".to_vec())
            .await
            .expect("write after restart"),
        b""
    );
    let v = n
        .node
        .read_linearizable(|kv| kv.map.len())
        .await
        .expect("read");
    assert_eq!(v, 2);
    n.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_without_leader_fails_retry_safe() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (l, addr) = bind().await;
    // Not in any cluster: never initialized, no leader.
    let mut cfg = config(7, dir.path(), &addr, &BTreeMap::new());
    cfg.leader_wait_ms = 300;
    let mut n = TestNode::start(cfg, l).await;
    n.node
        .initialize_if_fresh()
        .await
        .expect("no members: no-op");
    let err = n
        .node
        .write(b"set a 1".to_vec())
        .await
        .expect_err("no leader");
    assert!(matches!(err, RaftError::NoLeader { .. }), "{err}");
    assert!(err.is_retry_safe());
    assert!(!err.outcome_unknown());
    let err = n
        .node
        .read_linearizable(|_| ())
        .await
        .expect_err("no leader");
    assert!(matches!(err, RaftError::NoLeader { .. }), "{err}");
    n.kill().await;
    let err = n
        .node
        .write(b"set a 1".to_vec())
        .await
        .expect_err("stopped");
    assert!(matches!(err, RaftError::Fatal(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_forward_read_failover_catch_up() {
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
        let cfg = config(id, dir.path(), &members[&id], &members);
        nodes.push(TestNode::start(cfg, l).await);
    }
    // Every node may call it: openraft refuses the second initialization, which is fine.
    for n in &nodes {
        n.node.initialize_if_fresh().await.expect("init");
    }
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>(), T).await;
    let follower = nodes.iter().find(|n| n.id != leader).expect("a follower");

    // Write through a follower: forwarded to the leader.
    assert_eq!(
        follower
            .node
            .write(b"set k v1".to_vec())
            .await
            .expect("forwarded write"),
        b""
    );
    assert_eq!(
        follower
            .node
            .write(b"set k v2".to_vec())
            .await
            .expect("forwarded write"),
        b"v1"
    );
    // Linearizable read on every node sees the acknowledged write.
    for n in &nodes {
        let v = n
            .node
            .read_linearizable(|kv| kv.map.get("k").cloned())
            .await
            .expect("read");
        assert_eq!(v.as_deref(), Some("v2"), "node {}", n.id);
    }
    let st = nodes[(leader - 1) as usize].node.status();
    assert_eq!(st.role, Role::Leader);
    let repl = st.replication.expect("leader has replication progress");
    assert_eq!(repl.len(), 2, "{repl:?}");
    // Followers renew their leases with the leader every heartbeat: each holds a grant
    // carrying a log index it has applied (so committed), and the leader saw each ask.
    let deadline = std::time::Instant::now() + T;
    loop {
        let leader_status = nodes[(leader - 1) as usize].node.status();
        let asked = leader_status.replication.as_ref().is_some_and(|r| {
            r.values().all(|p| {
                p.lease_request_age
                    .is_some_and(|a| a < Duration::from_secs(2))
            })
        });
        let granted = nodes.iter().filter(|n| n.id != leader).all(|n| {
            let s = n.node.status();
            s.leader_id == Some(leader)
                && s.lease_age.is_some_and(|a| a < Duration::from_secs(2))
                && s.lease_log_index
                    .is_some_and(|c| c <= leader_status.committed_index.unwrap_or(0))
        });
        if asked && granted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no lease renewals: leader {leader_status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Kill the leader; the others elect a new one and writes continue.
    let old = (leader - 1) as usize;
    let old_cfg = config(leader, dir.path(), &members[&leader], &members);
    nodes[old].kill().await;
    let survivors: Vec<&TestNode> = nodes.iter().filter(|n| n.id != leader).collect();
    let new_leader = wait_leader(&survivors, T).await;
    assert_ne!(new_leader, leader);
    for i in 0..20 {
        let via = survivors[i % 2];
        via.node
            .write(format!("set n{i} {i}").into_bytes())
            .await
            .expect("write after failover");
    }
    for n in &survivors {
        let v = n
            .node
            .read_linearizable(|kv| kv.map.len())
            .await
            .expect("read");
        assert_eq!(v, 21, "node {}", n.id);
    }

    let target = *survivors[0].node.applied_index().borrow();

    // Restart the old leader: it catches up from the log.
    nodes[old] = TestNode::restart(old_cfg).await;
    nodes[old]
        .node
        .initialize_if_fresh()
        .await
        .expect("init no-op");
    let back = &nodes[old];
    wait_until("restarted node catches up", T, || {
        *back.node.applied_index().borrow() >= target
    })
    .await;
    assert_eq!(get(back, "n19").as_deref(), Some("19"));
    let v = back
        .node
        .read_linearizable(|kv| kv.map.len())
        .await
        .expect("read on restarted node");
    assert_eq!(v, 21);
    // It can forward writes again.
    back.node
        .write(b"set back yes".to_vec())
        .await
        .expect("write via restarted node");

    for n in &mut nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_learner_gets_snapshot_then_promoted() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (l1, a1) = bind().await;
    let (l2, a2) = bind().await;
    let members = BTreeMap::from([(1, a1.clone())]);
    let mut c1 = config(1, dir.path(), &a1, &members);
    c1.snapshot_every_logs = 50;
    c1.logs_kept_after_snapshot = 0;
    let mut n1 = TestNode::start(c1, l1).await;
    n1.node.initialize_if_fresh().await.expect("init");

    for i in 0..300 {
        n1.node
            .write(format!("set k{i} {i}").into_bytes())
            .await
            .expect("write");
    }
    n1.node.write(b"del k0".to_vec()).await.expect("delete");
    wait_until("leader purged its log behind a snapshot", T, || {
        let s = n1.node.status();
        s.snapshot_index.is_some_and(|i| i >= 250) && s.purged_index.is_some_and(|i| i >= 200)
    })
    .await;

    // A brand-new node (no initial members) joins as a learner: the purged log forces a snapshot.
    let mut c2 = config(2, dir.path(), &a2, &BTreeMap::new());
    c2.snapshot_every_logs = 50;
    c2.logs_kept_after_snapshot = 0;
    let mut n2 = TestNode::start(c2.clone(), l2).await;
    n2.node.initialize_if_fresh().await.expect("no-op");
    // A node outside the cluster knows no leader; add it through a member.
    n1.node
        .add_learner(2, a2.clone())
        .await
        .expect("add learner");
    let target = *n1.node.applied_index().borrow();
    wait_until("learner caught up", T, || {
        *n2.node.applied_index().borrow() >= target
    })
    .await;
    let s2 = n2.node.status();
    assert_eq!(s2.role, Role::Learner);
    assert!(
        s2.snapshot_index.is_some(),
        "learner installed a snapshot: {s2:?}"
    );
    assert_eq!(s2.learners.get(&2), Some(&a2));
    let m1 = n1.node.read_local(|kv| kv.map.clone());
    let m2 = n2.node.read_local(|kv| kv.map.clone());
    assert_eq!(m1.len(), 299);
    assert_eq!(m1, m2);

    // Linearizable read on the learner.
    let v = n2
        .node
        .read_linearizable(|kv| kv.map.get("k299").cloned())
        .await
        .expect("read");
    assert_eq!(v.as_deref(), Some("299"));

    // Promote it and write through it.
    n2.node
        .change_voters(BTreeSet::from([1, 2]))
        .await
        .expect("promote learner (forwarded from the learner to the leader)");
    wait_until("node 2 is a voter", T, || {
        n2.node.status().voters.contains_key(&2)
    })
    .await;
    n2.node
        .write(b"set after promote".to_vec())
        .await
        .expect("write via node 2");

    // Unknown learners cannot be promoted.
    let err = n1
        .node
        .change_voters(BTreeSet::from([1, 2, 9]))
        .await
        .expect_err("unknown node");
    assert!(matches!(err, RaftError::MembershipRejected(_)), "{err}");

    // Restart node 2 once it applied everything: its state (snapshot + later entries) comes
    // back from RocksDB. (An acknowledged write is committed, not necessarily applied on
    // every node yet.)
    let target = *n1.node.applied_index().borrow();
    wait_until("node 2 applied the last write", T, || {
        *n2.node.applied_index().borrow() >= target
    })
    .await;
    n2.kill().await;
    let n2b = RaftNode::<Kv>::start(c2, Kv::default())
        .await
        .expect("restart");
    let m2b = n2b.read_local(|kv| kv.map.clone());
    assert_eq!(m2b.get("after").map(String::as_str), Some("promote"));
    assert_eq!(m2b.len(), 300);
    n2b.shutdown().await.expect("shutdown");
    n1.kill().await;
}
