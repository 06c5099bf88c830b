//! The README's walkthroughs end to end: `fulcrum dev` as a real process, the `fulcrum` CLI
//! as a real process, real backends and real client connections. Layer 4: TCP listeners on
//! ports 80 and 90 over two members, round robin. Layer 7: HOST_NAME EQUAL_TO
//! www2.example.com routes to a second pool, everything else to the default pool.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A backend that answers every HTTP request with its name and closes.
async fn backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{name}\n");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

/// GET / with a Host header; returns the body.
async fn get(addr: &str, host: &str) -> Result<String, String> {
    let mut s = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .map_err(|_| "read timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("no HTTP answer: {text:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("status: {head}"));
    }
    Ok(body.trim().to_string())
}

struct Dev {
    child: Child,
    endpoint: String,
    token: String,
    metrics: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    fn start(dir: &Path) -> Dev {
        let (admin, peer, metrics) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(dir.join("dev.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
            .arg("dev")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .arg("--no-cli-config")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let token_file = dir.join("data").join("admin-token");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !token_file.exists() {
            assert!(Instant::now() < deadline, "fulcrum dev wrote no token");
            std::thread::sleep(Duration::from_millis(20));
        }
        let token = std::fs::read_to_string(token_file)
            .unwrap()
            .trim()
            .to_string();
        Dev {
            child,
            endpoint: format!("http://127.0.0.1:{admin}"),
            token,
            metrics: format!("127.0.0.1:{metrics}"),
        }
    }

    /// Runs `fulcrum <args>` against this node; returns stdout, panics with stderr on failure.
    fn cli(&self, args: &[&str]) -> String {
        let out = self.try_cli(args);
        match out {
            Ok(s) => s,
            Err(e) => panic!("fulcrum {}: {e}", args.join(" ")),
        }
    }

    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
            .args(["--endpoint", &self.endpoint, "--token", &self.token])
            .args(args)
            .env("FULCRUM_CONFIG", "/nonexistent/cli.toml")
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    fn wait_active(&self, lb: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.try_cli(&[
                "loadbalancer",
                "show",
                lb,
                "-f",
                "value",
                "-c",
                "provisioning_status",
            ]);
            if status.as_deref() == Ok("ACTIVE") {
                return;
            }
            assert!(Instant::now() < deadline, "{lb} not ACTIVE: {status:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Port 80 and 90 need root (CAP_NET_BIND_SERVICE); elsewhere the same walkthrough runs on
/// 8080/8090 and says so.
fn l4_ports() -> (u16, u16) {
    match StdListener::bind("127.0.10.254:80") {
        Ok(_) => (80, 90),
        Err(e) => {
            eprintln!(
                "NOTE: cannot bind port 80 ({e}); running the layer-4 walkthrough on 8080/8090"
            );
            (8080, 8090)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthroughs_through_fulcrum_dev_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let (one, two) = (backend("one").await, backend("two").await);
    let (p1, p2) = (one.to_string(), two.to_string());

    // Layer 4: the Octavia cookbook, with `openstack` replaced by `fulcrum`.
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.try_cli(&["loadbalancer", "list"]).is_err() {
        assert!(Instant::now() < deadline, "API never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    dev.cli(&[
        "loadbalancer",
        "create",
        "--vip-subnet-id",
        "private-subnet",
        "--name",
        "lb_test_1",
        "--wait",
    ]);
    let vip = dev.cli(&[
        "loadbalancer",
        "show",
        "lb_test_1",
        "-f",
        "value",
        "-c",
        "vip_address",
    ]);
    let (port80, port90) = l4_ports();
    for (port, name) in [(port80, "80"), (port90, "90")] {
        let port = port.to_string();
        let (listener, pool) = (format!("{name}_listener"), format!("{name}_pool"));
        dev.cli(&[
            "loadbalancer",
            "listener",
            "create",
            "--name",
            &listener,
            "--protocol",
            "TCP",
            "--protocol-port",
            &port,
            "lb_test_1",
        ]);
        dev.cli(&[
            "loadbalancer",
            "pool",
            "create",
            "--name",
            &pool,
            "--listener",
            &listener,
            "--protocol",
            "TCP",
            "--lb-algorithm",
            "ROUND_ROBIN",
        ]);
        for (i, backend_port) in [&p1, &p2].iter().enumerate() {
            let member = format!("{name}_member_{i}");
            dev.cli(&[
                "loadbalancer",
                "member",
                "create",
                "--name",
                &member,
                "--address",
                "127.0.0.1",
                "--protocol-port",
                backend_port,
                &pool,
            ]);
        }
    }
    dev.wait_active("lb_test_1");
    for port in [port80, port90] {
        let addr = format!("{vip}:{port}");
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(
                get(&addr, "lb")
                    .await
                    .unwrap_or_else(|e| panic!("{addr}: {e}")),
            );
        }
        seen.sort();
        assert_eq!(
            seen,
            ["one", "one", "two", "two"],
            "round robin over both members on {addr}"
        );
    }
    let stats = dev.cli(&["loadbalancer", "stats", "show", "lb_test_1", "-f", "json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["total_connections"], 8, "{stats}");
    // The same counters on the Prometheus endpoint.
    let mut s = TcpStream::connect(&dev.metrics).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let connections: u64 = text
        .lines()
        .filter(|l| l.starts_with("fulcrum_listener_connections_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(connections, 8, "{text}");
    assert!(text.contains("fulcrum_raft_is_leader 1"), "{text}");

    // Layer 7: HOST_NAME routing to a second pool.
    dev.cli(&[
        "loadbalancer",
        "listener",
        "create",
        "--name",
        "http_listener",
        "--protocol",
        "HTTP",
        "--protocol-port",
        "8088",
        "lb_test_1",
    ]);
    dev.cli(&[
        "loadbalancer",
        "pool",
        "create",
        "--name",
        "www_pool",
        "--listener",
        "http_listener",
        "--protocol",
        "HTTP",
        "--lb-algorithm",
        "ROUND_ROBIN",
    ]);
    dev.cli(&[
        "loadbalancer",
        "member",
        "create",
        "--address",
        "127.0.0.1",
        "--protocol-port",
        &p1,
        "www_pool",
    ]);
    dev.cli(&[
        "loadbalancer",
        "pool",
        "create",
        "--name",
        "www2_pool",
        "--loadbalancer",
        "lb_test_1",
        "--protocol",
        "HTTP",
        "--lb-algorithm",
        "ROUND_ROBIN",
    ]);
    dev.cli(&[
        "loadbalancer",
        "member",
        "create",
        "--address",
        "127.0.0.1",
        "--protocol-port",
        &p2,
        "www2_pool",
    ]);
    dev.cli(&[
        "loadbalancer",
        "l7policy",
        "create",
        "--action",
        "REDIRECT_TO_POOL",
        "--redirect-pool",
        "www2_pool",
        "--name",
        "www2",
        "http_listener",
    ]);
    dev.cli(&[
        "loadbalancer",
        "l7rule",
        "create",
        "--compare-type",
        "EQUAL_TO",
        "--type",
        "HOST_NAME",
        "--value",
        "www2.example.com",
        "www2",
    ]);
    dev.wait_active("lb_test_1");
    let addr = format!("{vip}:8088");
    for _ in 0..3 {
        assert_eq!(get(&addr, "www2.example.com").await.unwrap(), "two");
        assert_eq!(get(&addr, "www.example.com").await.unwrap(), "one");
    }

    // The status tree shows the listeners and pools ACTIVE and ONLINE.
    let tree = dev.cli(&["loadbalancer", "status", "show", "lb_test_1"]);
    let tree: serde_json::Value = serde_json::from_str(&tree).unwrap();
    let listeners = tree["loadbalancer"]["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 3);
    for l in listeners {
        assert_eq!(l["provisioning_status"], "ACTIVE", "{l}");
        assert_eq!(l["operating_status"], "ONLINE", "{l}");
    }

    // Deleting with --cascade removes everything and the listeners stop.
    dev.cli(&["loadbalancer", "delete", "--cascade", "--wait", "lb_test_1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&addr, "www.example.com").await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "listener still serving after delete"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What grpcurl needs: server reflection lists the services and serves their descriptors,
/// and grpc.health.v1 answers, all without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_and_health_serve_grpcurl() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        match tonic::transport::Channel::from_shared(dev.endpoint.clone())
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "API never came up: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let requests = tokio_stream::iter(vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "fulcrum.v1.LoadBalancerService".into(),
        )),
    ]);
    let mut answers = reflection
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "fulcrum.v1.LoadBalancerService",
        "fulcrum.v1.ListenerService",
        "fulcrum.v1.PoolService",
        "fulcrum.v1.MemberService",
        "fulcrum.v1.HealthMonitorService",
        "fulcrum.v1.L7PolicyService",
        "fulcrum.v1.L7RuleService",
        "fulcrum.v1.QuotaService",
        "fulcrum.v1.ClusterService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");
}

/// A listener the data plane cannot serve goes ERROR with the reason, and recovers once the
/// cause is gone; a listener of an unserved protocol is ERROR with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_that_cannot_be_served_are_error_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.try_cli(&["loadbalancer", "list"]).is_err() {
        assert!(Instant::now() < deadline, "API never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    dev.cli(&[
        "loadbalancer",
        "create",
        "--vip-address",
        "127.0.10.200",
        "--name",
        "busy",
        "--wait",
    ]);
    let port = free_port();
    let blocker = StdListener::bind(format!("127.0.10.200:{port}")).unwrap();
    dev.cli(&[
        "loadbalancer",
        "listener",
        "create",
        "--name",
        "clash",
        "--protocol",
        "TCP",
        "--protocol-port",
        &port.to_string(),
        "busy",
    ]);
    let status = |name: &str| {
        dev.try_cli(&["loadbalancer", "listener", "show", name, "-f", "json"])
            .map(|s| serde_json::from_str::<serde_json::Value>(&s).unwrap())
    };
    let wait_for = |name: &str, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = status(name);
            if s.as_ref().is_ok_and(|v| v["provisioning_status"] == want) {
                return s.unwrap();
            }
            assert!(Instant::now() < deadline, "{name} never {want}: {s:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let l = wait_for("clash", "ERROR");
    let reason = l["provisioning_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains(&port.to_string()),
        "reason names the address: {l}"
    );
    drop(blocker);
    wait_for("clash", "ACTIVE");
    dev.cli(&[
        "loadbalancer",
        "listener",
        "create",
        "--name",
        "tls",
        "--protocol",
        "TERMINATED_HTTPS",
        "--protocol-port",
        "8443",
        "--default-tls-container-ref",
        "secret",
        "busy",
    ]);
    let l = wait_for("tls", "ERROR");
    assert!(
        l["provisioning_error"]
            .as_str()
            .unwrap_or_default()
            .contains("not served"),
        "{l}"
    );
}

/// SIGTERM: the node stops accepting, lets an in-flight request finish, and exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.try_cli(&["loadbalancer", "list"]).is_err() {
        assert!(Instant::now() < deadline, "API never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A backend that takes a while to answer.
    let slow = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_port = slow.local_addr().unwrap().port().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = slow.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nslow\n",
                    )
                    .await;
            });
        }
    });
    dev.cli(&[
        "loadbalancer",
        "create",
        "--vip-address",
        "127.0.10.201",
        "--name",
        "drain",
        "--wait",
    ]);
    let port = free_port().to_string();
    dev.cli(&[
        "loadbalancer",
        "listener",
        "create",
        "--name",
        "d",
        "--protocol",
        "TCP",
        "--protocol-port",
        &port,
        "drain",
    ]);
    dev.cli(&[
        "loadbalancer",
        "pool",
        "create",
        "--name",
        "dp",
        "--listener",
        "d",
        "--protocol",
        "TCP",
        "--lb-algorithm",
        "ROUND_ROBIN",
    ]);
    dev.cli(&[
        "loadbalancer",
        "member",
        "create",
        "--address",
        "127.0.0.1",
        "--protocol-port",
        &slow_port,
        "dp",
    ]);
    dev.wait_active("drain");
    let addr = format!("127.0.10.201:{port}");
    let request = tokio::spawn({
        let addr = addr.clone();
        async move {
            let mut s = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .map_err(|e| e.to_string())?;
            let mut out = String::new();
            s.read_to_string(&mut out)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<String, String>(out)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = dev.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // New connections are refused soon after SIGTERM...
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while the request in flight completes.
    let answer = request.await.unwrap().expect("in-flight request");
    assert!(answer.ends_with("slow\n"), "{answer:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = dev.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}
