//! Test kit: real backends on 127.0.0.1:0, a data plane, and condition waits.
#![allow(dead_code)]

pub mod access_records;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fulcrum_dataplane::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A data plane whose shutdown fires when the harness is dropped.
pub struct Harness {
    pub dp: Dataplane,
    _stop: oneshot::Sender<()>,
}

impl Harness {
    /// A data plane with one worker thread, so that every client connection
    /// reuses the same member connections (each worker keeps its own).
    pub fn new() -> Self {
        Self::with_workers(1)
    }

    /// A data plane with `workers` worker threads.
    pub fn with_workers(workers: usize) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let workers = std::num::NonZeroUsize::new(workers).expect("at least one worker");
        let dp = Dataplane::with_workers(workers, async move {
            let _ = rx.await;
        })
        .expect("worker threads start");
        Self { dp, _stop: tx }
    }

    /// Applies and asserts every listener converged; returns the changes by id.
    pub async fn apply_ok(&self, cfg: DataplaneConfig) -> HashMap<String, ListenerChange> {
        self.dp
            .apply(cfg)
            .await
            .into_iter()
            .map(|r| {
                let change = r
                    .outcome
                    .unwrap_or_else(|e| panic!("listener {}: {e}", r.listener_id));
                (r.listener_id, change)
            })
            .collect()
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.dp.local_addr(listener).expect("listener running")
    }
}

/// Polls `cond` every 10 ms until it holds; panics after `within`.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A TCP backend that writes its name and a newline, then echoes.
pub struct TcpBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpBackend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        Self::serve(name, listener)
    }

    pub fn serve(name: &str, listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (n, count) = (name.to_string(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let n = n.clone();
                tokio::spawn(async move {
                    if s.write_all(format!("{n}\n").as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        Self {
            name: name.into(),
            addr,
            accepted,
            task,
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A member whose every connection `serve` handles, on a task of its own.
pub async fn member_serving<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// An address that refuses connections while the returned socket lives: it
/// is bound there and never listens, so no other test can take the port
/// meanwhile (as one could after a listener bound to find a free port closed).
pub fn refusing_addr() -> (SocketAddr, tokio::net::TcpSocket) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(LOCALHOST, 0)).unwrap();
    (s.local_addr().unwrap(), s)
}

/// Connects through the proxy and returns the backend's name line, or
/// `None` if the proxy closed the connection.
pub async fn tcp_name(addr: SocketAddr) -> Option<String> {
    let s = TcpStream::connect(addr).await.ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .expect("no hang")
        .ok()?;
    (n > 0).then(|| line.trim_end().to_string())
}

/// Opens a connection and reads the name, keeping the connection open.
pub async fn tcp_open(addr: SocketAddr) -> (String, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).await.unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    (line.trim_end().to_string(), r)
}

/// True when the proxy closes the connection without data.
pub async fn tcp_closed(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return true;
    };
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("no hang"),
        Ok(0) | Err(_)
    )
}

/// An HTTP backend: answers `status` with its name as body (`POST`: name,
/// `:`, then the request body) and echoes some request headers back as
/// `echo-<name>` headers; `/login` sets the cookie `sid=<name>-session`.
pub struct HttpBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    /// Connections accepted.
    pub conns: Arc<AtomicUsize>,
    pub status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpBackend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(AtomicU16::new(200));
        let (n, count, st, accepted) = (
            name.to_string(),
            requests.clone(),
            status.clone(),
            conns.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (n, count, st) = (n.clone(), count.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        let (n, st) = (n.clone(), st.clone());
                        async move {
                            let mut echoed = http::HeaderMap::new();
                            for h in [
                                "x-forwarded-for",
                                "x-forwarded-port",
                                "x-forwarded-proto",
                                "host",
                                "cookie",
                            ] {
                                if let Some(v) = req.headers().get(h) {
                                    echoed.insert(
                                        hyper::header::HeaderName::from_bytes(
                                            format!("echo-{h}").as_bytes(),
                                        )
                                        .unwrap(),
                                        v.clone(),
                                    );
                                }
                            }
                            let login = req.uri().path() == "/login";
                            let body = if req.method() == http::Method::POST {
                                let b = req.into_body().collect().await.unwrap().to_bytes();
                                format!("{n}:{}", String::from_utf8_lossy(&b))
                            } else {
                                n.clone()
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                            *resp.headers_mut() = echoed;
                            if login {
                                resp.headers_mut().insert(
                                    "set-cookie",
                                    format!("sid={n}-session; Path=/; HttpOnly")
                                        .parse()
                                        .unwrap(),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Self {
            name: name.into(),
            addr,
            requests,
            conns,
            status,
            task,
        }
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A simple HTTP response as seen by the test client.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub headers: http::HeaderMap,
}

pub type TestClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

pub fn client() -> TestClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2c_client() -> TestClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub async fn get(c: &TestClient, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(c, http::Method::GET, addr, path, headers, "").await
}

pub async fn request(
    c: &TestClient,
    method: http::Method,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> Resp {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(
            b.body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap(),
        ),
    )
    .await
    .expect("no hang")
    .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        body: String::from_utf8_lossy(&body).into(),
        headers,
    }
}

// ---- config builders ----

pub fn member(id: &str, addr: SocketAddr) -> MemberConfig {
    MemberConfig::new(id, addr)
}

pub fn pool(
    id: &str,
    protocol: PoolProtocol,
    algo: LbAlgorithm,
    members: Vec<MemberConfig>,
) -> PoolConfig {
    let mut p = PoolConfig::new(id, protocol, algo);
    p.members = members;
    p
}

pub fn listener(id: &str, protocol: ListenerProtocol, pool: Option<PoolConfig>) -> ListenerConfig {
    let mut l = ListenerConfig::new(id, LOCALHOST, 0, protocol);
    l.default_pool = pool;
    l
}

pub fn config(listeners: Vec<ListenerConfig>) -> DataplaneConfig {
    DataplaneConfig { listeners }
}
