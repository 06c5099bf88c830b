//! Test kit: a tiny key/value App and helpers to run nodes in-process over loopback gRPC.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use fulcrum_raft::App;
use fulcrum_raft::Applied;
use fulcrum_raft::RaftConfig;
use fulcrum_raft::RaftNode;
use fulcrum_raft::Role;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Key/value map. Commands: `set <key> <value>` / `del <key>`; the response is the previous
/// value (empty if none), or `ERR ...` for a malformed command.
#[derive(Debug, Default)]
pub struct Kv {
    pub map: BTreeMap<String, String>,
}

impl App for Kv {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Applied {
        let text = String::from_utf8_lossy(command);
        let parts: Vec<&str> = text.splitn(3, ' ').collect();
        match parts.as_slice() {
            ["set", k, v] => {
                let prev = self.map.insert(k.to_string(), v.to_string());
                Applied {
                    response: prev.unwrap_or_default().into_bytes(),
                    changes: vec![(k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))],
                }
            }
            ["del", k] => {
                let prev = self.map.remove(*k);
                Applied {
                    response: prev.unwrap_or_default().into_bytes(),
                    changes: vec![(k.as_bytes().to_vec(), None)],
                }
            }
            _ => Applied {
                response: b"ERR malformed".to_vec(),
                changes: vec![],
            },
        }
    }

    fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn restore(&mut self, records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), String> {
        let mut map = BTreeMap::new();
        for (k, v) in records {
            let k = String::from_utf8(k).map_err(|e| e.to_string())?;
            let v = String::from_utf8(v).map_err(|e| e.to_string())?;
            map.insert(k, v);
        }
        self.map = map;
        Ok(())
    }
}

/// A node running in this process with its peer server.
pub struct TestNode {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    pub node: RaftNode<Kv>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Bind a loopback listener on a free port.
pub async fn bind() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("local addr").to_string();
    (l, addr)
}

pub fn config(id: u64, dir: &Path, addr: &str, members: &BTreeMap<u64, String>) -> RaftConfig {
    let mut c = RaftConfig::new(id, dir.join(format!("node{id}")), addr, members.clone());
    c.heartbeat_ms = 50;
    c.election_timeout_min_ms = 300;
    c.election_timeout_max_ms = 600;
    c
}

impl TestNode {
    /// Start a node on `listener` and serve its peer service.
    pub async fn start(config: RaftConfig, listener: TcpListener) -> TestNode {
        let id = config.node_id;
        let addr = config.peer_addr.clone();
        let dir = config.data_dir.clone();
        let node = RaftNode::start(config, Kv::default())
            .await
            .expect("start node");
        let (tx, rx) = oneshot::channel::<()>();
        let n = node.clone();
        let server = tokio::spawn(async move {
            let _ = n
                .serve_peer(listener, async {
                    let _ = rx.await;
                })
                .await;
        });
        TestNode {
            id,
            addr,
            dir,
            node,
            stop: Some(tx),
            server: Some(server),
        }
    }

    /// Restart a stopped node on its old address and data.
    pub async fn restart(config: RaftConfig) -> TestNode {
        let listener = TcpListener::bind(&config.peer_addr).await.expect("rebind");
        TestNode::start(config, listener).await
    }

    /// Shut the node down (Raft + peer server) and wait for both.
    pub async fn kill(&mut self) {
        self.node.shutdown().await.expect("shutdown");
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
}

/// Poll `cond` every 20 ms until it holds; panic after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until every node in `nodes` agrees on one leader among them; return its id.
pub async fn wait_leader(nodes: &[&TestNode], timeout: Duration) -> u64 {
    let ids: Vec<u64> = nodes.iter().map(|n| n.id).collect();
    let mut leader = 0;
    wait_until("a common leader", timeout, || {
        let leaders: Vec<Option<u64>> = nodes.iter().map(|n| n.node.status().leader_id).collect();
        match leaders[0] {
            Some(l) if ids.contains(&l) && leaders.iter().all(|x| *x == Some(l)) => {
                let leader_node = nodes.iter().find(|n| n.id == l);
                if leader_node.is_some_and(|n| n.node.status().role == Role::Leader) {
                    leader = l;
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    })
    .await;
    leader
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
