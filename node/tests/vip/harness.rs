//! The lab for the VIP tests: namespaces on a bridge, client-side probes (`arping`,
//! `ip neigh`, our own neighbour solicitations), and the helper process that runs a
//! `VipManager` inside a namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::vip::ndp::{self, NdMessage, NdpFrame};
use crate::vip::socket::PacketSocket;
use crate::vip::{MacAddr, Vip, VipManager, VipManagerConfig};

/// Set in the environment of a helper process.
pub const HELPER_ENV: &str = "FULCRUM_VIP_HELPER";
/// Marks the helper's protocol lines among libtest's own output.
const PREFIX: &str = "VIPHELPER ";
/// How long one helper command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// The MACs of the lab hosts' `eth0`.
pub const MAC_A: &str = "02:f0:00:00:00:0a";
/// See [`MAC_A`].
pub const MAC_B: &str = "02:f0:00:00:00:0b";
/// See [`MAC_A`].
pub const MAC_C: &str = "02:f0:00:00:00:0c";

const NETNS_DIR: &str = "/var/run/netns";
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `ip <args>`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    if let Err(e) = try_ip(args) {
        panic!("{e}");
    }
}

fn try_ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces of one test: a switch (bridge `br0`) and hosts with `eth0` on it, in a /24
/// and a /64 (`fd00:77:<n>::/64`) of their own, IPv6 duplicate address detection off.
/// Dropping it deletes them.
pub struct Lab {
    prefix: String,
    switch: String,
    namespaces: Vec<String>,
    subnet: [u8; 3],
}

impl Lab {
    /// A new lab, or `None` (after a loud SKIPPED line) without root or namespaces.
    pub fn new(tag: &str) -> Option<Lab> {
        cleanup_stale();
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("fv{pid}_{seq}");
        let switch = format!("{prefix}sw");
        if let Err(e) = try_ip(&["netns", "add", &switch]) {
            // Straight to stderr, past libtest's capture, so that it shows.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED vip test `{tag}`: needs root/netns ({e}) ***\n"
            );
            return None;
        }
        let lab = Lab {
            subnet: [10, 78, ((pid + seq * 7) % 250) as u8],
            prefix,
            switch: switch.clone(),
            namespaces: vec![switch.clone()],
        };
        let arping = Command::new("arping").arg("-V").output();
        assert!(
            arping.is_ok(),
            "the VIP tests need iputils `arping` (apt package iputils-arping; scripts/deps.sh installs it)"
        );
        ip(&["-n", &switch, "link", "set", "lo", "up"]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        Some(lab)
    }

    /// Adds host `role` with `eth0` (MAC `mac`, addresses `<subnet>.<host>/24` and
    /// `<subnet6>::<host>/64`) on the bridge.
    pub fn host(&mut self, role: &str, mac: &str, host: u8) -> String {
        let ns = format!("{}{role}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        // No DAD: addresses (link-local too) are usable at once and nothing is held back.
        for conf in ["all", "default"] {
            set_sysctl(&ns, &format!("net/ipv6/conf/{conf}/accept_dad"), "0");
        }
        let port = format!("p{role}");
        let sw = self.switch.as_str();
        let cidr = format!("{}/24", self.addr(host));
        let cidr6 = format!("{}/64", self.addr6(host));
        for args in [
            vec![
                "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "address",
                mac, "netns", &ns,
            ],
            vec!["-n", sw, "link", "set", &port, "master", "br0"],
            vec!["-n", sw, "link", "set", &port, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
            vec!["-n", &ns, "addr", "add", &cidr, "dev", "eth0"],
        ] {
            ip(&args);
        }
        set_sysctl(&ns, "net/ipv6/conf/eth0/accept_dad", "0");
        ip(&["-n", &ns, "addr", "add", &cidr6, "dev", "eth0", "nodad"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        // IPv6 brings its addresses and prefix route up only once the link has carrier
        // (a linkwatch event, up to a second later); until then IPv6 is "unreachable".
        let prefix = format!("{}/64", self.addr6(0));
        let ready = wait_for(Duration::from_secs(10), || {
            try_ip(&["-n", &ns, "-6", "route", "show", "dev", "eth0"])
                .unwrap_or_default()
                .contains(&prefix)
        });
        assert!(ready, "no IPv6 route {prefix} in {ns}");
        ns
    }

    /// The IPv6 address of host `host` (`fd00:77:<n>::<host>`).
    pub fn addr6(&self, host: u8) -> Ipv6Addr {
        let n = u16::from(self.subnet[2]);
        Ipv6Addr::new(0xfd00, 0x77, n, 0, 0, 0, 0, u16::from(host))
    }

    /// The IPv6 VIP of the tests (in the hosts' /64, so the client solicits it on-link).
    pub fn vip6(&self) -> Ipv6Addr {
        self.addr6(0x50)
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }

    /// The VIP of the tests (in the hosts' subnet, so the client ARPs for it).
    pub fn vip(&self) -> Ipv4Addr {
        self.addr(50)
    }

    /// A second VIP.
    pub fn vip2(&self) -> Ipv4Addr {
        self.addr(51)
    }

    /// An address an operator put on `lo` by hand.
    pub fn operator_addr(&self) -> Ipv4Addr {
        self.addr(52)
    }

    /// Whether `addr` is an address of `lo` in `ns`.
    pub fn lo_has(&self, ns: &str, addr: impl Into<IpAddr>) -> bool {
        let addr = addr.into();
        let out = try_ip(&["-n", ns, "-o", "addr", "show", "dev", "lo"]).unwrap_or_default();
        out.contains(&format!(" {addr}/"))
    }

    /// A sysctl of `net.ipv4.conf.<conf>` in `ns`.
    pub fn sysctl(&self, ns: &str, conf: &str, key: &str) -> String {
        let path = format!("/proc/sys/net/ipv4/conf/{conf}/{key}");
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat", &path])
            .output()
            .expect("run cat");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// One ARP request for `target` from `ns`'s eth0: the MAC that answered within 1 s.
    pub fn arping(&self, ns: &str, target: Ipv4Addr) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns", "exec", ns, "arping", "-c", "1", "-w", "1", "-I", "eth0",
            ])
            .arg(target.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run arping");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.contains("reply from"))?;
        let mac = line.split('[').nth(1)?.split(']').next()?;
        Some(mac.to_ascii_lowercase())
    }

    /// Retries [`Lab::arping`] until `mac` answers (10 s at most).
    pub fn wait_arping(&self, ns: &str, target: Ipv4Addr, mac: &str) -> bool {
        wait_for(Duration::from_secs(10), || {
            self.arping(ns, target).as_deref() == Some(mac)
        })
    }

    /// The link-layer address in `ns`'s neighbour entry for `target` on eth0.
    pub fn neigh(&self, ns: &str, target: impl Into<IpAddr>) -> Option<String> {
        let out = self.neigh_entry(ns, target);
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// `ns`'s neighbour entry for `target` on eth0 as `ip neigh` shows it ("" if none).
    pub fn neigh_entry(&self, ns: &str, target: impl Into<IpAddr>) -> String {
        let target = target.into().to_string();
        try_ip(&["-n", ns, "neigh", "show", &target, "dev", "eth0"])
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Forgets `ns`'s neighbour entry for `target` on eth0.
    pub fn neigh_flush(&self, ns: &str, target: impl Into<IpAddr>) {
        let target = target.into().to_string();
        let _ = try_ip(&["-n", ns, "neigh", "flush", "to", &target, "dev", "eth0"]);
    }

    /// Whether `ns`'s eth0 is a member of the solicited-node group of `vip`.
    pub fn joined_solicited_node(&self, ns: &str, vip: Ipv6Addr) -> bool {
        let group = ndp::solicited_node(vip);
        try_ip(&["-n", ns, "-6", "maddr", "show", "dev", "eth0"])
            .unwrap_or_default()
            .split_whitespace()
            .any(|w| w == group.to_string())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            kill_all_in(ns);
            let _ = try_ip(&["netns", "del", ns]);
        }
    }
}

/// Whether every thread of process `pid` is stopped (state `T`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // "tid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            == Some("T")
    })
}

/// Writes `/proc/sys/<key>` inside `ns`.
fn set_sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{key}");
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!("echo {value} > {path}"),
        ])
        .status()
        .expect("run sh");
    assert!(status.success(), "set {path} in {ns}");
}

/// SIGKILLs what still runs in one of our namespaces (helpers of a failed test).
fn kill_all_in(ns: &str) {
    if let Ok(pids) = try_ip(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

/// Deletes namespaces of earlier test processes that died without cleaning up:
/// `fv<pid>_...` whose pid is gone. Only this harness's names are touched.
fn cleanup_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("fv") else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('_') else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_all_in(&name);
        let _ = try_ip(&["netns", "del", &name]);
    }
}

/// A helper process running a `VipManager` in a namespace, driven over stdin/stdout.
pub struct Helper {
    ns: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
    exited: bool,
}

impl Helper {
    /// Starts this test binary's `helper_process` in `ns` and waits until it is ready.
    pub fn spawn(ns: &str, env: &[(&str, &str)]) -> Helper {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "helper_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn helper");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may have printed "test helper_process ... " on the same line.
                if let Some(at) = line.find(PREFIX) {
                    if tx.send(line[at + PREFIX.len()..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut helper = Helper {
            ns: ns.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            log,
            exited: false,
        };
        let ready = helper.next_line();
        assert_eq!(ready, "ready", "helper in {ns} did not start");
        helper
    }

    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(COMMAND_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let log = self.log_text();
                panic!("helper in {}: no answer ({e}); its log:\n{log}", self.ns)
            }
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends one command and returns the answer.
    pub fn cmd(&mut self, line: &str) -> String {
        let stdin = self.stdin.as_mut().expect("helper stdin open");
        writeln!(stdin, "{line}").expect("write to helper");
        stdin.flush().expect("flush helper stdin");
        self.next_line()
    }

    /// Sends a command that must answer `ok`.
    pub fn ok(&mut self, line: &str) {
        let answer = self.cmd(line);
        assert_eq!(answer, "ok", "helper in {}: `{line}`", self.ns);
    }

    /// The manager's counters by name.
    pub fn stats(&mut self) -> BTreeMap<String, u64> {
        let answer = self.cmd("stats");
        let rest = answer.strip_prefix("stats ").expect("stats answer");
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().expect("number")))
            .collect()
    }

    /// The MAC of the latest conflicting claim the manager saw.
    pub fn last_conflict_mac(&mut self) -> Option<String> {
        let answer = self.cmd("conflict");
        answer
            .strip_prefix("conflict ")
            .filter(|m| *m != "none")
            .map(str::to_owned)
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the helper.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
        if signal == "STOP" {
            // A stop signal takes effect thread by thread, when the thread the kernel
            // picked gets to run: wait until every thread is stopped.
            let pid = self.child.id();
            assert!(
                wait_for(Duration::from_secs(10), || all_threads_stopped(pid)),
                "helper {pid} did not stop"
            );
        }
    }

    /// kill -9, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = true;
    }

    /// Closes stdin (the helper's shutdown signal) and waits for a clean exit.
    pub fn shutdown(&mut self) {
        drop(self.stdin.take());
        assert_eq!(self.next_line(), "stopped");
        let status = self.child.wait().expect("wait helper");
        self.exited = true;
        assert!(status.success(), "helper exit: {status}");
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if !self.exited {
            // Continue first, in case a failed test left it stopped.
            let _ = Command::new("kill")
                .args(["-CONT", &self.child.id().to_string()])
                .status();
            self.kill();
        }
        if std::thread::panicking() {
            eprintln!("--- helper log ({}) ---\n{}", self.ns, self.log_text());
        }
    }
}

// ------------------------------------------------------------------- the helper itself

fn say(line: &str) {
    println!("{PREFIX}{line}");
}

/// The helper process's main: a `VipManager` obeying line commands on stdin until EOF.
pub fn run_helper() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FULCRUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(helper_main());
}

async fn helper_main() {
    use tokio::io::AsyncBufReadExt;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let config = VipManagerConfig::default();
    let manager = VipManager::start(config, async {
        let _ = stop_rx.await;
    })
    .await
    .expect("start VipManager");
    say("ready");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = handle(&manager, line.trim()).await;
        say(&answer);
    }
    drop(stop_tx);
    manager.stopped().await;
    say("stopped");
}

async fn handle(manager: &VipManager, line: &str) -> String {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let result = match verb {
        "local" => match parse_vips(rest) {
            Ok(vips) => manager.set_local(&vips).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
        "held" => match parse_vips(rest) {
            Ok(vips) => manager.set_held(&vips).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
        "stats" => {
            let s = manager.stats();
            return format!(
                "stats garp={} replies={} na={} answered={} conflicts={} send_errors={} recv_errors={} local={} held={}",
                s.garp_sent,
                s.arp_replies_sent,
                s.na_sent,
                s.ns_answered,
                s.conflicts_seen,
                s.send_errors,
                s.recv_errors,
                s.local,
                s.held
            );
        }
        "conflict" => {
            return match manager.stats().last_conflict {
                Some(c) => format!("conflict {}", c.other_mac),
                None => "conflict none".to_owned(),
            }
        }
        "listen" => listen(rest).await,
        "connect" => return connect(rest).await,
        "solicit" => return solicit(rest).await,
        _ => Err(format!("unknown command {verb:?}")),
    };
    match result {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("err {e}"),
    }
}

fn parse_vips(text: &str) -> Result<BTreeSet<Vip>, String> {
    text.split_whitespace()
        .map(|word| {
            let (ip, interface) = word
                .split_once('@')
                .ok_or_else(|| format!("want ip@interface: {word}"))?;
            let ip: IpAddr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
            Ok(Vip::new(ip, interface))
        })
        .collect()
}

/// `listen ip:port text`: every connection gets `text`, then EOF.
async fn listen(args: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let (addr, text) = args.split_once(' ').ok_or("want ip:port text")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    let text = text.to_owned();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(text.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    Ok(())
}

/// `connect ip:port`: `got <what the server sent>`.
async fn connect(addr: &str) -> String {
    use tokio::io::AsyncReadExt;
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok::<_, std::io::Error>(text)
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(text)) => format!("got {text}"),
        Ok(Err(e)) => format!("err {e}"),
        Err(_) => "err timeout".to_owned(),
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
fn parse_mac(text: &str) -> Option<MacAddr> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    MacAddr::from_slice(&bytes)
}

/// Reads `/sys/class/net/eth0/<what>` (`ip netns exec` mounts the namespace's sysfs).
fn eth0_sys(what: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/eth0/{what}"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// `solicit target source [mac]`: one neighbour solicitation for `target` from `source`
/// out of eth0, to the target's solicited-node group or (with `mac`) unicast to `mac`
/// (a reachability probe). Answers `na <tlla> S=<0|1> O=<0|1> R=<0|1>` for the first
/// advertisement for `target` addressed to `source` within 1 s, or `none`.
async fn solicit(args: &str) -> String {
    let words: Vec<&str> = args.split_whitespace().collect();
    let (Some(target), Some(source)) = (words.first(), words.get(1)) else {
        return "err want target source [mac]".to_owned();
    };
    let (Ok(target), Ok(source)) = (target.parse::<Ipv6Addr>(), source.parse::<Ipv6Addr>()) else {
        return "err bad address".to_owned();
    };
    let unicast = match words.get(2) {
        Some(m) => match parse_mac(m) {
            Some(mac) => Some(mac),
            None => return format!("err bad mac {m}"),
        },
        None => None,
    };
    let (Ok(ifindex), Some(mac)) = (
        eth0_sys("ifindex").parse::<u32>(),
        parse_mac(&eth0_sys("address")),
    ) else {
        return "err cannot read eth0 from /sys".to_owned();
    };
    let socket = match PacketSocket::ndp(ifindex) {
        Ok(s) => s,
        Err(e) => return format!("err socket: {e}"),
    };
    let ns = NdpFrame::solicit(mac, source, target, unicast);
    if let Err(e) = socket.send(&ns.to_bytes()) {
        return format!("err send: {e}");
    }
    let mut buf = vec![0u8; 2048];
    let wait = async {
        loop {
            let Ok(n) = socket.recv(&mut buf).await else {
                return "err recv".to_owned();
            };
            let Some(na) = NdpFrame::parse(&buf[..n]) else {
                continue;
            };
            if let NdMessage::Advert {
                target: t,
                router,
                solicited,
                override_,
                target_lla,
            } = na.message
            {
                if t == target && na.ip_dst == source && na.eth_dst == mac {
                    let lla = target_lla.map_or("-".to_owned(), |m| m.to_string());
                    return format!(
                        "na {lla} S={} O={} R={}",
                        u8::from(solicited),
                        u8::from(override_),
                        u8::from(router)
                    );
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), wait)
        .await
        .unwrap_or_else(|_| "none".to_owned())
}
