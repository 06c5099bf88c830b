//! HTTP from the client namespace: backends that answer with their name, a one-shot GET,
//! and [`HttpProbe`], which opens a new connection to a VIP listener every interval, sends a
//! request and records who answered and when.
//!
//! A probe attempt succeeds only when the whole exchange does (connect, request, a `200`
//! response whose body names an expected backend) within its deadline: a frozen node's
//! kernel still completes TCP handshakes, so a bare connect says little.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::netns::NetnsRuntime;

/// Backends in a namespace, each answering every HTTP request with its name as the body.
pub struct Backends {
    addrs: Vec<(String, SocketAddr)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Backends {
    /// Starts one backend per name on `ip` (ephemeral ports) in `rt`'s namespace.
    pub async fn start(
        rt: &NetnsRuntime,
        ip: Ipv4Addr,
        names: &[&str],
    ) -> Result<Backends, String> {
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for name in names {
            let name = name.to_string();
            let listener = rt
                .run(async move { TcpListener::bind((ip, 0)).await })
                .await
                .map_err(|e| format!("bind backend {name} on {ip}: {e}"))?;
            let addr = listener
                .local_addr()
                .map_err(|e| format!("backend address: {e}"))?;
            addrs.push((name.clone(), addr));
            tasks.push(rt.spawn(serve_name(listener, name)));
        }
        Ok(Backends { addrs, tasks })
    }

    /// The address of the backend called `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no backend {name}"))
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn serve_name(listener: TcpListener, name: String) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                // Serve requests until the peer closes: the L7 proxy may keep the connection.
                loop {
                    while find(&buf, b"\r\n\r\n").is_none() {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = find(&buf, b"\r\n\r\n").map(|i| i + 4).unwrap_or(buf.len());
                    buf.drain(..end);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            })
            .await;
        });
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One GET over a new connection to `addr` with `Host: host`; returns the body of a `200`
/// response. Must run in the client namespace (inside [`NetnsRuntime::run`] or a task of it).
pub async fn http_get(addr: SocketAddr, host: &str, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, get(addr, host)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no complete answer within {timeout:?}")),
    }
}

async fn get(addr: SocketAddr, host: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(body) = complete_body(&buf)? {
            return Ok(body);
        }
        match s.read(&mut chunk).await {
            Ok(0) => {
                return complete_body(&buf)?.ok_or_else(|| {
                    format!(
                        "connection closed after {} bytes: {:?}",
                        buf.len(),
                        String::from_utf8_lossy(&buf[..buf.len().min(200)])
                    )
                })
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// The body of a complete `200` response in `buf` (Content-Length or chunked), `None` if
/// more bytes are needed; an error for another status.
fn complete_body(buf: &[u8]) -> Result<Option<String>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or_default().to_string();
    if !status.starts_with("http/1.1 200") && !status.starts_with("http/1.0 200") {
        return Err(format!("status `{status}`"));
    }
    let body = &buf[head_end + 4..];
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let Some(line_end) = find(rest, b"\r\n") else {
                return Ok(None);
            };
            let size_text = String::from_utf8_lossy(&rest[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                return Ok(Some(String::from_utf8_lossy(&out).into_owned()));
            }
            if rest.len() < size + 2 {
                return Ok(None);
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    match header("content-length:") {
        Some(v) => {
            let len: usize = v.parse().map_err(|_| format!("bad content-length {v:?}"))?;
            if body.len() < len {
                return Ok(None);
            }
            Ok(Some(String::from_utf8_lossy(&body[..len]).into_owned()))
        }
        // Until the connection closes (handled by the caller).
        None => Ok(None),
    }
}

/// One probe attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When the connection attempt started.
    pub start: Instant,
    /// When it succeeded or failed.
    pub end: Instant,
    /// The answering backend's name, if the exchange completed.
    pub backend: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl Attempt {
    /// Whether a backend answered.
    pub fn ok(&self) -> bool {
        self.backend.is_some()
    }
}

/// Starts a new GET to `addr` every `interval` (attempts overlap; each may take up to
/// `timeout`) from a namespace's runtime and records every attempt.
pub struct HttpProbe {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The address probed.
    pub addr: SocketAddr,
}

impl HttpProbe {
    /// Starts probing.
    pub fn start(
        rt: &NetnsRuntime,
        addr: SocketAddr,
        host: &str,
        interval: Duration,
        timeout: Duration,
    ) -> HttpProbe {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s, host) = (attempts.clone(), stop.clone(), host.to_string());
        let task = rt.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut inflight = Vec::new();
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                let (a, host) = (a.clone(), host.clone());
                inflight.push(tokio::spawn(async move {
                    let start = Instant::now();
                    let r = http_get(addr, &host, timeout).await;
                    let end = Instant::now();
                    let (backend, error) = match r {
                        Ok(b) => (Some(b), None),
                        Err(e) => (None, Some(e)),
                    };
                    a.lock().expect("attempts").push(Attempt {
                        start,
                        end,
                        backend,
                        error,
                    });
                }));
                inflight.retain(|h| !h.is_finished());
            }
            for h in inflight {
                let _ = h.await;
            }
        });
        HttpProbe {
            attempts,
            stop,
            task: Some(task),
            addr,
        }
    }

    /// Every finished attempt so far, by start time.
    pub fn attempts(&self) -> Vec<Attempt> {
        let mut v = self.attempts.lock().expect("attempts").clone();
        v.sort_by_key(|a| a.start);
        v
    }

    /// Whether the last `n` finished attempts (by start) that started at or after `since`
    /// all succeeded.
    pub fn last_ok(&self, n: usize, since: Instant) -> bool {
        let a = self.attempts();
        let after: Vec<&Attempt> = a.iter().filter(|x| x.start >= since).collect();
        after.len() >= n && after[after.len() - n..].iter().all(|x| x.ok())
    }

    /// Stops starting attempts and waits for the ones in flight.
    pub async fn finish(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.attempts()
    }
}

impl Drop for HttpProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A stretch of failed attempts: from the start of its first failed attempt to the end of
/// the first successful attempt started after its last failed one (`None`: none yet).
#[derive(Debug, Clone, Copy)]
pub struct FailStretch {
    /// Start of the first failed attempt.
    pub from: Instant,
    /// Start of the last failed attempt.
    pub last_fail: Instant,
    /// End of the first later successful attempt.
    pub recovered: Option<Instant>,
    /// Failed attempts in the stretch.
    pub failures: usize,
}

/// Failed stretches among attempts that started in `[from, to)`, ordered by start; a
/// success ends a stretch.
pub fn fail_stretches(attempts: &[Attempt], from: Instant, to: Instant) -> Vec<FailStretch> {
    let mut sorted: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.start >= from && a.start < to)
        .collect();
    sorted.sort_by_key(|a| a.start);
    let mut out = Vec::new();
    let mut cur: Option<FailStretch> = None;
    for a in sorted {
        match (a.ok(), cur.as_mut()) {
            (false, None) => {
                cur = Some(FailStretch {
                    from: a.start,
                    last_fail: a.start,
                    recovered: None,
                    failures: 1,
                })
            }
            (false, Some(c)) => {
                c.last_fail = a.start;
                c.failures += 1;
            }
            (true, Some(c)) => {
                c.recovered = Some(a.end);
                out.push(*c);
                cur = None;
            }
            (true, None) => {}
        }
    }
    out.extend(cur);
    out
}

/// Time from `fault` to the end of the first successful attempt started at or after it
/// (the outage a new client sees): `None` if none succeeded.
pub fn first_success_after(attempts: &[Attempt], fault: Instant) -> Option<Duration> {
    attempts
        .iter()
        .filter(|a| a.ok() && a.start >= fault)
        .map(|a| a.end.saturating_duration_since(fault))
        .min()
}

/// Time from `fault` until the service was back for good: the end of the first successful
/// attempt started after the last failed attempt started in `[fault, to)` (zero if none
/// failed); `None` if no attempt succeeded after that failure. Pass every attempt, also
/// those started after `to`: an attempt still in flight at `to` may be the last failure.
pub fn outage_after(attempts: &[Attempt], fault: Instant, to: Instant) -> Option<Duration> {
    let Some(last_fail) = attempts
        .iter()
        .filter(|a| !a.ok() && a.start >= fault && a.start < to)
        .map(|a| a.start)
        .max()
    else {
        return Some(Duration::ZERO);
    };
    attempts
        .iter()
        .filter(|a| a.ok() && a.start > last_fail)
        .map(|a| a.end)
        .min()
        .map(|r| r.saturating_duration_since(fault))
}

/// The longest failed stretch within `[from, to)` (zero if none; a stretch with no recovery
/// counts up to `to`).
pub fn longest_blackhole(attempts: &[Attempt], from: Instant, to: Instant) -> Duration {
    fail_stretches(attempts, from, to)
        .iter()
        .map(|s| s.recovered.unwrap_or(to).saturating_duration_since(s.from))
        .max()
        .unwrap_or_default()
}

/// Backends that answered attempts started in `[from, to)`.
pub fn backends_seen(attempts: &[Attempt], from: Instant, to: Instant) -> BTreeSet<String> {
    attempts
        .iter()
        .filter(|a| a.start >= from && a.start < to)
        .filter_map(|a| a.backend.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(t0: Instant, start: u64, took: u64, ok: bool) -> Attempt {
        Attempt {
            start: t0 + Duration::from_millis(start),
            end: t0 + Duration::from_millis(start + took),
            backend: ok.then(|| "b1".to_string()),
            error: (!ok).then(|| "refused".to_string()),
        }
    }

    #[test]
    fn outage_runs_from_the_fault_to_the_first_success_after_the_last_failure() {
        let t0 = Instant::now();
        let a = vec![
            attempt(t0, 0, 2, true),
            attempt(t0, 100, 900, false),
            attempt(t0, 125, 900, false),
            attempt(t0, 150, 3, true), // a lucky one in the middle
            attempt(t0, 175, 900, false),
            attempt(t0, 400, 5, true),
            attempt(t0, 425, 5, true),
        ];
        let fault = t0 + Duration::from_millis(90);
        let to = t0 + Duration::from_millis(1000);
        assert_eq!(
            outage_after(&a, fault, to),
            Some(Duration::from_millis(315))
        );
        assert_eq!(fail_stretches(&a, fault, to).len(), 2);
        assert_eq!(longest_blackhole(&a, fault, to), Duration::from_millis(230));
        assert_eq!(outage_after(&a[..1], fault, to), Some(Duration::ZERO));
        assert_eq!(outage_after(&a[..5], fault, to), None);
        // 150 ms was the lucky one; a hanging attempt that succeeds late does not count first.
        assert_eq!(
            first_success_after(&a, fault),
            Some(Duration::from_millis(63))
        );
        assert_eq!(first_success_after(&a[..3], fault), None);
        // The recovering success may start after `to`.
        let early = t0 + Duration::from_millis(300);
        assert_eq!(
            outage_after(&a, fault, early),
            Some(Duration::from_millis(315))
        );
    }

    #[test]
    fn parses_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nb1";
        assert_eq!(complete_body(r).unwrap().as_deref(), Some("b1"));
        assert_eq!(complete_body(&r[..r.len() - 1]).unwrap(), None);
        let c = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nb1\r\n0\r\n\r\n";
        assert_eq!(complete_body(c).unwrap().as_deref(), Some("b1"));
        assert!(complete_body(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").is_err());
    }
}
