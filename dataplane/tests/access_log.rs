//! Access logs: one record per HTTP request, TCP connection and UDP flow, with
//! the fields an operator reads; nothing at all when switched off.
//!
//! Records are collected by a `tracing` layer installed as this test binary's
//! global subscriber (`common::access_records`); tests run in parallel, so each looks only at the records
//! of its own listeners.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::access_records::{install, records, Record};
use common::*;
use fulcrum_dataplane::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Waits for the `n`th record of `listener` and returns it.
async fn nth_record(listener: &str, n: usize) -> Record {
    wait_for(
        &format!("record {n} of {listener}"),
        Duration::from_secs(5),
        || async { records(listener).len() > n },
    )
    .await;
    records(listener).swap_remove(n)
}

/// Sends one raw HTTP/1.1 request on a new connection (closed after the
/// response); returns the client's address and the response.
async fn raw_request(addr: SocketAddr, head: &str, body: &str) -> (SocketAddr, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let local = s.local_addr().unwrap();
    let req = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp))
        .await
        .expect("no hang")
        .unwrap();
    (local, resp)
}

/// A member that accepts and then does what `behave` says with the connection.
async fn odd_member(behave: fn(TcpStream) -> Option<TcpStream>) -> SocketAddr {
    let l = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.extend(behave(s));
        }
    });
    addr
}

/// A member that reads a request head, thinks for 300 ms and then answers
/// 200 with a 4 MiB body.
async fn late_member() -> SocketAddr {
    member_serving(|mut s| async move {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let body = vec![b'x'; 4 << 20];
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&body).await;
    })
    .await
}

fn assert_fields(r: &Record, expect: &[(&str, &str)]) {
    for (k, v) in expect {
        assert_eq!(r.get(*k).map(String::as_str), Some(*v), "{k} in {r:?}");
    }
}

fn micros(r: &Record, k: &str) -> u64 {
    r.get(k)
        .unwrap_or_else(|| panic!("{k} in {r:?}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn http_requests_tcp_connections_and_udp_flows_are_logged() {
    install();
    let h = Harness::new();
    h.dp.set_access_log(true);
    assert!(h.dp.access_log());
    let web = HttpBackend::start("web").await;
    let t = TcpBackend::start("t").await;
    let closes = odd_member(|_| None).await; // accepts and closes: 502
    let silent = odd_member(Some).await; // accepts, never answers: 504
    let late = late_member().await; // answers after the client left: client abort
    let udp_member = {
        let s = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let reply = format!("u:{}", String::from_utf8_lossy(&buf[..n]));
                let _ = s.send_to(reply.as_bytes(), from).await;
            }
        });
        addr
    };
    let http_pool = |id: &str, m: SocketAddr| {
        Some(pool(
            id,
            PoolProtocol::Http,
            LbAlgorithm::RoundRobin,
            vec![member(&format!("{id}-m"), m)],
        ))
    };
    let mut slow = listener("al-slow", ListenerProtocol::Http, http_pool("slow", silent));
    slow.timeouts.member_data = Duration::from_millis(200);
    let mut abort = listener("al-abort", ListenerProtocol::Http, http_pool("abort", late));
    abort.timeouts.member_data = Duration::ZERO;
    let mut udp = listener(
        "al-udp",
        ListenerProtocol::Udp,
        Some(pool(
            "udp",
            PoolProtocol::Udp,
            LbAlgorithm::RoundRobin,
            vec![member("udp-m", udp_member)],
        )),
    );
    udp.timeouts.client_data = Duration::from_millis(200);
    h.apply_ok(config(vec![
        listener(
            "al-http",
            ListenerProtocol::Http,
            http_pool("web", web.addr),
        ),
        listener("al-empty", ListenerProtocol::Http, None),
        listener(
            "al-reset",
            ListenerProtocol::Http,
            http_pool("reset", closes),
        ),
        slow,
        abort,
        listener(
            "al-tcp",
            ListenerProtocol::Tcp,
            Some(pool(
                "tcp",
                PoolProtocol::Tcp,
                LbAlgorithm::RoundRobin,
                vec![member("tcp-m", t.addr)],
            )),
        ),
        udp,
    ]))
    .await;

    // A GET and a POST, served.
    let (client, resp) = raw_request(
        h.addr("al-http"),
        "GET /hello?token=secret HTTP/1.1\r\nHost: www.example.com",
        "",
    )
    .await;
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("web"),
        "{resp}"
    );
    let r = nth_record("al-http", 0).await;
    let (client, member_addr) = (client.to_string(), web.addr.to_string());
    assert_fields(
        &r,
        &[
            ("protocol", "http"),
            ("client", &client),
            ("member", &member_addr),
            ("member_id", "web-m"),
            ("method", "GET"),
            ("host", "www.example.com"),
            ("path", "/hello"),
            ("status", "200"),
            ("bytes_in", "0"),
            ("bytes_out", "3"),
            ("termination", "completed"),
            ("message", "access"),
        ],
    );
    assert!(micros(&r, "ttfb_us") <= micros(&r, "duration_us"), "{r:?}");
    let (_, resp) = raw_request(h.addr("al-http"), "POST /up HTTP/1.1\r\nHost: x", "abc").await;
    assert!(resp.ends_with("web:abc"), "{resp}");
    let r = nth_record("al-http", 1).await;
    assert_fields(
        &r,
        &[
            ("method", "POST"),
            ("path", "/up"),
            ("bytes_in", "3"),
            ("bytes_out", "7"),
            ("termination", "completed"),
        ],
    );

    // Answered by the proxy: no member (503), member reset (502), member timeout (504).
    let (_, resp) = raw_request(h.addr("al-empty"), "GET / HTTP/1.1\r\nHost: x", "").await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    let r = nth_record("al-empty", 0).await;
    assert_fields(
        &r,
        &[
            ("status", "503"),
            ("termination", "no_member"),
            ("bytes_out", "24"),
        ],
    );
    assert!(
        !r.contains_key("member") && !r.contains_key("ttfb_us"),
        "{r:?}"
    );
    let (_, resp) = raw_request(h.addr("al-reset"), "GET / HTTP/1.1\r\nHost: x", "").await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    let closes = closes.to_string();
    assert_fields(
        &nth_record("al-reset", 0).await,
        &[
            ("status", "502"),
            ("termination", "member_reset"),
            ("member", &closes),
        ],
    );
    let (_, resp) = raw_request(h.addr("al-slow"), "GET / HTTP/1.1\r\nHost: x", "").await;
    assert!(resp.starts_with("HTTP/1.1 504"), "{resp}");
    assert_fields(
        &nth_record("al-slow", 0).await,
        &[("status", "504"), ("termination", "member_timeout")],
    );

    // The client resets while the member thinks. The proxy does not read the
    // client socket while a request is in progress (a half-closed client may
    // still want its response), so it learns when writing the response: the
    // body breaks off and the request is logged as a client abort, with the
    // member's status.
    let mut s = TcpStream::connect(h.addr("al-abort")).await.unwrap();
    s.write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    wait_for("request in flight", Duration::from_secs(5), || async {
        h.dp.stats()["al-abort"].bytes_in > 0
    })
    .await;
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    let r = nth_record("al-abort", 0).await;
    assert_fields(
        &r,
        &[
            ("termination", "client_abort"),
            ("path", "/wait"),
            ("status", "200"),
        ],
    );

    // One TCP connection: 5 bytes in, "t\n" + echo out.
    let (name, mut conn) = tcp_open(h.addr("al-tcp")).await;
    assert_eq!(name, "t");
    let client = conn.get_ref().local_addr().unwrap().to_string();
    conn.get_mut().write_all(b"ping\n").await.unwrap();
    let mut echo = String::new();
    conn.read_line(&mut echo).await.unwrap();
    drop(conn);
    let r = nth_record("al-tcp", 0).await;
    let t_addr = t.addr.to_string();
    assert_fields(
        &r,
        &[
            ("protocol", "tcp"),
            ("client", &client),
            ("member", &t_addr),
            ("member_id", "tcp-m"),
            ("bytes_in", "5"),
            ("bytes_out", "7"),
            ("termination", "completed"),
        ],
    );
    assert!(micros(&r, "ttfb_us") <= micros(&r, "duration_us"), "{r:?}");
    assert!(!r.contains_key("method"), "{r:?}");

    // One UDP flow, logged when it idles out.
    let c = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    c.send_to(b"x", h.addr("al-udp")).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), c.recv(&mut buf))
        .await
        .expect("reply")
        .unwrap();
    assert_eq!(&buf[..n], b"u:x");
    let r = nth_record("al-udp", 0).await;
    let (client, udp_member) = (c.local_addr().unwrap().to_string(), udp_member.to_string());
    assert_fields(
        &r,
        &[
            ("protocol", "udp"),
            ("client", &client),
            ("member", &udp_member),
            ("bytes_in", "1"),
            ("bytes_out", "3"),
            ("termination", "idle_timeout"),
        ],
    );
}

/// One HTTP request and one TCP connection to the `quiet-*` listeners,
/// waiting until both connections are closed.
async fn traffic(h: &Harness) {
    let (_, resp) = raw_request(h.addr("quiet-http"), "GET / HTTP/1.1\r\nHost: x", "").await;
    assert!(resp.ends_with("web"), "{resp}");
    assert_eq!(tcp_name(h.addr("quiet-tcp")).await.as_deref(), Some("t"));
    // Records are emitted before a connection stops counting as active.
    wait_for("connections closed", Duration::from_secs(5), || async {
        let s = h.dp.stats();
        s["quiet-http"].active_connections == 0 && s["quiet-tcp"].active_connections == 0
    })
    .await;
}

#[tokio::test]
async fn nothing_is_logged_when_switched_off() {
    install();
    let h = Harness::new();
    assert!(!h.dp.access_log(), "off by default");
    let web = HttpBackend::start("web").await;
    let t = TcpBackend::start("t").await;
    h.apply_ok(config(vec![
        listener(
            "quiet-http",
            ListenerProtocol::Http,
            Some(pool(
                "qweb",
                PoolProtocol::Http,
                LbAlgorithm::RoundRobin,
                vec![member("qweb-m", web.addr)],
            )),
        ),
        listener(
            "quiet-tcp",
            ListenerProtocol::Tcp,
            Some(pool(
                "qtcp",
                PoolProtocol::Tcp,
                LbAlgorithm::RoundRobin,
                vec![member("qtcp-m", t.addr)],
            )),
        ),
    ]))
    .await;
    traffic(&h).await;
    assert!(records("quiet-http").is_empty() && records("quiet-tcp").is_empty());

    h.dp.set_access_log(true);
    traffic(&h).await;
    assert_eq!(records("quiet-http").len(), 1);
    assert_eq!(records("quiet-tcp").len(), 1);

    h.dp.set_access_log(false);
    traffic(&h).await;
    assert_eq!(records("quiet-http").len(), 1);
    assert_eq!(records("quiet-tcp").len(), 1);
}

/// A UDP flow ended to make room at the connection limit is logged as
/// `evicted`.
#[tokio::test]
async fn an_evicted_udp_flow_is_logged_as_such() {
    install();
    let h = Harness::new();
    h.dp.set_access_log(true);
    let silent = UdpSocket::bind((LOCALHOST, 0)).await.unwrap(); // never answers
    let p = pool(
        "ev",
        PoolProtocol::Udp,
        LbAlgorithm::RoundRobin,
        vec![member("ev-m", silent.local_addr().unwrap())],
    );
    let mut l = listener("al-evict", ListenerProtocol::Udp, Some(p));
    l.connection_limit = Some(1);
    h.apply_ok(config(vec![l])).await;
    let (first, second) = (
        UdpSocket::bind((LOCALHOST, 0)).await.unwrap(),
        UdpSocket::bind((LOCALHOST, 0)).await.unwrap(),
    );
    first.send_to(b"1", h.addr("al-evict")).await.unwrap();
    wait_for("the first flow", Duration::from_secs(5), || async {
        h.dp.stats()["al-evict"].active_connections == 1
    })
    .await;
    second.send_to(b"2", h.addr("al-evict")).await.unwrap();
    let r = nth_record("al-evict", 0).await;
    let client = first.local_addr().unwrap().to_string();
    assert_fields(
        &r,
        &[("client", client.as_str()), ("termination", "evicted")],
    );
}
