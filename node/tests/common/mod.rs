//! A cluster of real `fulcrum serve` processes on loopback ports, driven like prose:
//! `Cluster::start(3)`, `cluster.kill(leader)`, `cluster.restart(node)`, `cluster.wait_for_leader()`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fulcrum_proto::v1::cluster_service_client::ClusterServiceClient;
use fulcrum_proto::v1::load_balancer_service_client::LoadBalancerServiceClient;
use fulcrum_proto::v1::*;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const ADMIN_TOKEN: &str = "cluster-test-admin-token";

/// An interceptor adding the bearer token.
#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(r)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node of the cluster.
pub struct Node {
    pub id: u64,
    pub admin: String,
    pub peer: String,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("FULCRUM_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn fulcrum serve");
        self.child = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.admin))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(15))
            .connect_lazy()
    }

    pub async fn lbs(&self) -> LoadBalancerServiceClient<Authed> {
        LoadBalancerServiceClient::with_interceptor(
            self.channel().await,
            Bearer(ADMIN_TOKEN.into()),
        )
    }

    pub async fn cluster(&self) -> ClusterServiceClient<Authed> {
        ClusterServiceClient::with_interceptor(self.channel().await, Bearer(ADMIN_TOKEN.into()))
    }
}

/// Several real node processes.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes that form one cluster.
    pub fn start(n: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let members: String = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("{} = \"127.0.0.1:{peer}\"\n", i + 1))
            .collect();
        let hash = fulcrum_control::api::hash_token(ADMIN_TOKEN);
        let mut nodes = Vec::new();
        for (i, (admin, peer)) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            let config = dir.path().join(format!("node{id}.toml"));
            let text = format!(
                r#"node_id = {id}
data_dir = "{data}"
admin_listen = "127.0.0.1:{admin}"
peer_listen = "127.0.0.1:{peer}"

[cluster]
{members}
[[tokens]]
sha256 = "{hash}"
project_id = "admin"
role = "admin"

[[vip_subnets]]
name = "private-subnet"
cidr = "127.0.20.0/24"
"#,
                data = dir.path().join(format!("data{id}")).display(),
            );
            std::fs::write(&config, text).unwrap();
            let mut node = Node {
                id,
                admin: format!("127.0.0.1:{admin}"),
                peer: format!("127.0.0.1:{peer}"),
                config,
                log: dir.path().join(format!("node{id}.log")),
                child: None,
            };
            node.spawn();
            nodes.push(node);
        }
        Cluster { dir, nodes }
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    pub fn kill(&mut self, id: u64) {
        self.nodes[(id - 1) as usize].kill();
    }

    pub fn stop(&mut self, id: u64) {
        self.nodes[(id - 1) as usize].stop();
    }

    pub fn restart(&mut self, id: u64) {
        let node = &mut self.nodes[(id - 1) as usize];
        node.kill();
        node.spawn();
    }

    /// Waits until a running node reports a leader that is itself running; returns its id.
    pub async fn wait_for_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                let mut c = node.cluster().await;
                if let Ok(s) = c.get_cluster_status(GetClusterStatusRequest {}).await {
                    let leader = s.into_inner().leader_id;
                    if leader != 0 && self.node(leader).is_running() {
                        return leader;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "no leader within {within:?}; logs in {}",
                    self.dir.path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Prints the nodes' logs (for failing tests).
    pub fn dump_logs(&self) {
        for n in &self.nodes {
            if let Ok(text) = std::fs::read_to_string(&n.log) {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- node {} log (last lines) ---", n.id);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

/// Retries `f` until it succeeds or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => {
                panic!("condition not met within {within:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub fn lb_request(name: &str) -> CreateLoadBalancerRequest {
    CreateLoadBalancerRequest {
        loadbalancer: Some(LoadBalancerCreate {
            name: name.into(),
            vip_subnet_id: "private-subnet".into(),
            ..Default::default()
        }),
    }
}
