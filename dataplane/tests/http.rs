//! L7 proxy, end to end: routing, actions, errors, headers, persistence.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use fulcrum_dataplane::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn http_pool(id: &str, backends: &[&HttpBackend]) -> PoolConfig {
    pool(
        id,
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        backends.iter().map(|b| member(&b.name, b.addr)).collect(),
    )
}

/// A data plane with one HTTP listener `l` over one backend `b`.
async fn one_http_listener() -> (Harness, HttpBackend) {
    let h = Harness::new();
    let b = HttpBackend::start("b").await;
    h.apply_ok(config(vec![listener(
        "l",
        ListenerProtocol::Http,
        Some(http_pool("p", &[&b])),
    )]))
    .await;
    (h, b)
}

fn rule(
    rule_type: L7RuleType,
    compare_type: L7CompareType,
    key: Option<&str>,
    value: &str,
) -> L7RuleConfig {
    L7RuleConfig {
        id: format!("{rule_type:?}-{value}"),
        rule_type,
        compare_type,
        key: key.map(Into::into),
        value: value.into(),
        invert: false,
        admin_state_up: true,
    }
}

fn policy(id: &str, position: u32, rules: Vec<L7RuleConfig>, action: L7Action) -> L7PolicyConfig {
    L7PolicyConfig {
        id: id.into(),
        position,
        admin_state_up: true,
        rules,
        action,
    }
}

#[tokio::test]
async fn l7_routing_for_every_rule_type_and_actions() {
    let h = Harness::new();
    let names = ["default", "host", "path", "file", "header", "cookie"];
    let mut backends = Vec::new();
    for n in names {
        backends.push(HttpBackend::start(n).await);
    }
    let to = |i: usize| {
        L7Action::RedirectToPool(http_pool(&format!("pool-{}", names[i]), &[&backends[i]]))
    };
    let mut l = listener(
        "web",
        ListenerProtocol::Http,
        Some(http_pool("pool-default", &[&backends[0]])),
    );
    l.l7policies = vec![
        policy(
            "reject",
            1,
            vec![rule(
                L7RuleType::Path,
                L7CompareType::StartsWith,
                None,
                "/admin",
            )],
            L7Action::Reject,
        ),
        policy(
            "url",
            2,
            vec![rule(L7RuleType::Path, L7CompareType::EqualTo, None, "/old")],
            L7Action::RedirectToUrl {
                url: "https://example.com/new".into(),
                http_code: None,
            },
        ),
        policy(
            "prefix",
            3,
            vec![rule(
                L7RuleType::HostName,
                L7CompareType::EqualTo,
                None,
                "legacy.example.com",
            )],
            L7Action::RedirectPrefix {
                prefix: "https://www.example.com/".into(),
                http_code: Some(301),
            },
        ),
        policy(
            "host",
            4,
            vec![rule(
                L7RuleType::HostName,
                L7CompareType::EndsWith,
                None,
                ".api.example.com",
            )],
            to(1),
        ),
        policy(
            "path",
            5,
            vec![rule(
                L7RuleType::Path,
                L7CompareType::Regex,
                None,
                "^/v[0-9]+/",
            )],
            to(2),
        ),
        policy(
            "file",
            6,
            vec![rule(
                L7RuleType::FileType,
                L7CompareType::EqualTo,
                None,
                "png",
            )],
            to(3),
        ),
        policy(
            "header",
            7,
            vec![rule(
                L7RuleType::Header,
                L7CompareType::Contains,
                Some("X-Canary"),
                "yes",
            )],
            to(4),
        ),
        policy(
            "cookie",
            8,
            vec![rule(
                L7RuleType::Cookie,
                L7CompareType::EqualTo,
                Some("tier"),
                "gold",
            )],
            to(5),
        ),
    ];
    h.apply_ok(config(vec![l])).await;
    let addr = h.addr("web");
    let c = client();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("/", &[], "default"),
        ("/x", &[("host", "eu.api.example.com")], "host"),
        ("/v2/items", &[], "path"),
        ("/img/logo.png", &[], "file"),
        ("/x", &[("x-canary", "oh-yes-please")], "header"),
        ("/x", &[("cookie", "a=b; tier=gold")], "cookie"),
        ("/x", &[("cookie", "tier=silver")], "default"),
    ];
    for (path, headers, expect) in cases {
        let r = get(&c, addr, path, headers).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, *expect),
            "{path} {headers:?}"
        );
    }
    let r = get(&c, addr, "/admin/x", &[]).await;
    assert_eq!(r.status, 403);
    let r = get(&c, addr, "/old", &[]).await;
    assert_eq!(
        (r.status, r.headers["location"].to_str().unwrap()),
        (302, "https://example.com/new")
    );
    let r = get(&c, addr, "/a/b?c=d", &[("host", "legacy.example.com")]).await;
    assert_eq!(
        (r.status, r.headers["location"].to_str().unwrap()),
        (301, "https://www.example.com/a/b?c=d")
    );
    // Nothing rejected or redirected reached a member.
    assert_eq!(
        backends
            .iter()
            .map(|b| b.requests.load(Ordering::SeqCst))
            .sum::<usize>(),
        7
    );
}

#[tokio::test]
async fn no_member_is_503_and_no_pool_is_503() {
    let h = Harness::new();
    let empty = pool("empty", PoolProtocol::Http, LbAlgorithm::RoundRobin, vec![]);
    h.apply_ok(config(vec![
        listener("a", ListenerProtocol::Http, Some(empty)),
        listener("b", ListenerProtocol::Http, None),
    ]))
    .await;
    let c = client();
    assert_eq!(get(&c, h.addr("a"), "/", &[]).await.status, 503);
    assert_eq!(get(&c, h.addr("b"), "/", &[]).await.status, 503);
    assert_eq!(h.dp.stats()["a"].request_errors, 1);
}

/// A member that answers every connection with `reply` and closes.
async fn bad_member(reply: &'static [u8]) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(reply).await;
            drop(s);
        }
    });
    addr
}

#[tokio::test]
async fn garbage_or_reset_from_member_is_502() {
    let h = Harness::new();
    let garbage = bad_member(b"this is not http\r\n\r\n").await;
    let silent = bad_member(b"").await;
    let p1 = pool(
        "g",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("g", garbage)],
    );
    let p2 = pool(
        "s",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("s", silent)],
    );
    h.apply_ok(config(vec![
        listener("g", ListenerProtocol::Http, Some(p1)),
        listener("s", ListenerProtocol::Http, Some(p2)),
    ]))
    .await;
    let c = client();
    assert_eq!(get(&c, h.addr("g"), "/", &[]).await.status, 502);
    assert_eq!(get(&c, h.addr("s"), "/", &[]).await.status, 502);
}

#[tokio::test]
async fn malformed_request_is_400_and_never_reaches_a_member() {
    let (h, b) = one_http_listener().await;
    // Also the framings requests are smuggled with: two lengths that
    // disagree, a transfer coding that does not end in chunked, and one on
    // HTTP/1.0.
    let raws = [
        &b"GET / HTTP/1.1\r\nHost: x\r\nbroken header line\r\n\r\n"[..],
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for raw in raws {
        let (_, out) = raw_exchange(h.addr("l"), &[raw], false).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{raw:?}: {out:?}");
    }
    assert_eq!(b.requests.load(Ordering::SeqCst), 0);
    wait_for("errors counted", Duration::from_secs(5), || async {
        h.dp.stats()["l"].request_errors == raws.len() as u64
    })
    .await;
}

/// Sends `parts` with a pause between them (then shuts the sending side
/// down if `half_close`) and reads until the proxy closes: how long that
/// took from the first write, and what came back.
async fn raw_exchange(
    addr: std::net::SocketAddr,
    parts: &[&[u8]],
    half_close: bool,
) -> (Duration, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let start = std::time::Instant::now();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.write_all(part).await.unwrap();
    }
    if half_close {
        s.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the proxy closes the connection")
        .unwrap();
    (start.elapsed(), String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn half_closed_clients_and_heads_in_pieces_are_answered() {
    let (h, b) = one_http_listener().await;
    // The client shuts its sending side down once the request is out and
    // still gets its response (then the connection closes).
    let (_, out) = raw_exchange(h.addr("l"), &[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], true).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("\r\n\r\nb"),
        "{out:?}"
    );
    // A head that arrives in pieces, and a keep-alive connection's second
    // request that comes later (both make the proxy wait for the client).
    let (_, out) = raw_exchange(
        h.addr("l"),
        &[
            b"GET / HT",
            b"TP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ],
        false,
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out:?}");
    assert_eq!(b.requests.load(Ordering::SeqCst), 3);
}

/// A member that answers each request after `delay`, keeping the connection.
async fn slow_member(delay: Duration) -> std::net::SocketAddr {
    member_serving(move |mut s| async move {
        let mut buf = [0u8; 1024];
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
            tokio::time::sleep(delay).await;
            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow";
            if s.write_all(reply).await.is_err() {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn client_data_timeout_closes_idle_clients_but_not_waiting_ones() {
    let h = Harness::new();
    let b = HttpBackend::start("b").await;
    let slow = slow_member(Duration::from_millis(700)).await;
    let timeout = Duration::from_millis(300);
    let mut fast = listener("fast", ListenerProtocol::Http, Some(http_pool("p", &[&b])));
    fast.timeouts.client_data = timeout;
    let mut waits = listener(
        "waits",
        ListenerProtocol::Http,
        Some(pool(
            "s",
            PoolProtocol::Http,
            LbAlgorithm::RoundRobin,
            vec![member("s-m", slow)],
        )),
    );
    waits.timeouts.client_data = timeout;
    h.apply_ok(config(vec![fast, waits])).await;
    let in_time = |took: Duration| took >= timeout - Duration::from_millis(5) && took < timeout * 5;
    let get: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    // Nothing sent, half a head, and a keep-alive connection after its answer.
    for sent in [&b""[..], b"GET / HTTP/1.1\r\nHo"] {
        let (took, out) = raw_exchange(h.addr("fast"), &[sent], false).await;
        assert!(
            out.is_empty() && in_time(took),
            "{sent:?}: {took:?} {out:?}"
        );
    }
    let (took, out) = raw_exchange(h.addr("fast"), &[get], false).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && in_time(took),
        "{took:?} {out:?}"
    );

    // A request that waits for its member longer than timeout_client_data
    // is answered; the idle time counts from the answer.
    let (took, out) = raw_exchange(h.addr("waits"), &[get], false).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("slow"),
        "{out:?}"
    );
    assert!(
        took >= Duration::from_millis(700) + timeout - Duration::from_millis(5),
        "{took:?}"
    );
}

/// Sends `whole` at once, then `trickled` a byte every `gap`, while reading
/// until the proxy closes: how long that took (from the first byte sent)
/// and what came back. Sending stops at the first failed write.
async fn trickle(
    addr: std::net::SocketAddr,
    whole: &[u8],
    trickled: &[u8],
    gap: Duration,
) -> (Duration, String) {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let start = std::time::Instant::now();
    wr.write_all(whole).await.unwrap();
    let trickled = trickled.to_vec();
    let writer = tokio::spawn(async move {
        for b in trickled {
            tokio::time::sleep(gap).await;
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
        }
        // Keep the sending side open: the proxy is what closes.
        std::future::pending::<()>().await;
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out)).await;
    writer.abort();
    assert!(read.is_ok(), "the proxy closes the connection: {out:?}");
    (start.elapsed(), String::from_utf8_lossy(&out).into_owned())
}

/// `timeout_client_data` bounds how long a request head may take: bytes
/// trickling in (each well within the timeout) do not keep a connection
/// open, on its first request (HTTP/2 preface included) or on a later one.
/// A body trickling in the same way is a request in progress and goes
/// through.
#[tokio::test]
async fn a_head_trickled_in_is_closed_after_client_data() {
    let h = Harness::new();
    let b = HttpBackend::start("b").await;
    let timeout = Duration::from_millis(300);
    one_member_listener(&h, b.addr, timeout).await;
    let gap = Duration::from_millis(60);
    let in_time = |took: Duration| took >= timeout - Duration::from_millis(5) && took < timeout * 5;
    let slow_header = [b'a'; 80]; // 4.8 s of trickling at `gap`

    let head: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let (took, out) = trickle(h.addr("l"), head, &slow_header, gap).await;
    assert!(out.is_empty() && in_time(took), "{took:?} {out:?}");

    // The HTTP/2 preface, which the proxy waits for whole before it knows
    // the protocol, trickled in (24 bytes: 2.4 s at 100 ms): each wait for
    // its next piece is half the one before, all less than twice the timeout.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let (took, out) = trickle(h.addr("l"), b"", preface, Duration::from_millis(100)).await;
    assert!(out.is_empty() && took < timeout * 2, "{took:?} {out:?}");

    // The second request's head: the clock starts at the first answer.
    let first_then_head = [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], head].concat();
    let (took, out) = trickle(h.addr("l"), &first_then_head, &slow_header, gap).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("\r\n\r\nb") && in_time(took),
        "{took:?} {out:?}"
    );
    assert_eq!(b.requests.load(Ordering::SeqCst), 1);

    // 8 body bytes over 480 ms, on a keep-alive connection: answered, then
    // idle (the time counts from the answer).
    let post: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n";
    let (took, out) = trickle(h.addr("l"), post, b"trickled", gap).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("b:trickled"),
        "{out:?}"
    );
    assert!(
        took >= gap * 8 + timeout - Duration::from_millis(5),
        "{took:?}"
    );
}

/// Applies one HTTP listener `l` over the one member `m`, with
/// `timeout_client_data` = `client_data`.
async fn one_member_listener(h: &Harness, m: std::net::SocketAddr, client_data: Duration) {
    let p = pool(
        "p",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("m", m)],
    );
    let mut l = listener("l", ListenerProtocol::Http, Some(p));
    l.timeouts.client_data = client_data;
    h.apply_ok(config(vec![l])).await;
}

/// An h2c connection to `addr` (its task spawned) with the given stream
/// window (`None`: hyper's default); ends when the proxy closes it.
async fn h2c_connect(
    addr: std::net::SocketAddr,
    window: Option<u32>,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut b = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    if let Some(w) = window {
        b.initial_stream_window_size(w);
    }
    let (send, conn) = b
        .handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// A bodiless GET of `path`, for [`h2c_connect`].
fn h2c_get(path: &str) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    http::Request::get(format!("http://x{path}"))
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// A member that answers before the upload ends: the client's idle timeout
/// does not start while the body still comes (each byte well within it), and
/// the connection serves its next request after.
#[tokio::test]
async fn an_upload_going_on_after_an_early_answer_keeps_its_connection() {
    let h = Harness::new();
    // Answers every request at once, then reads its 8-byte body.
    let m = member_serving(|mut s| async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                continue;
            };
            let post = got.starts_with(b"POST");
            got.drain(..end + 4);
            let answer: &[u8] = match post {
                true => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly",
                false => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            };
            if s.write_all(answer).await.is_err() {
                return;
            }
            while post && got.len() < 8 {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            if post {
                got.drain(..8);
            }
        }
    })
    .await;
    let timeout = Duration::from_millis(300);
    one_member_listener(&h, m, timeout).await;

    let mut s = tokio::net::TcpStream::connect(h.addr("l")).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"early") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "the early answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    // 8 body bytes over 800 ms, the answer long done.
    for b in b"trickled" {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&[*b]).await.unwrap();
    }
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("answered, then closed")
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.starts_with("HTTP/1.1 200") && rest.ends_with("ok"),
        "{rest:?}"
    );
}

/// HTTP/2 streams end in tasks of their own: the connection's idle timeout
/// still starts once its last stream is done (and the client goes quiet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_connections_close_after_client_data_once_idle() {
    use http_body_util::{BodyExt, Empty};
    let h = Harness::new();
    let b = HttpBackend::start("b").await;
    let timeout = Duration::from_millis(300);
    one_member_listener(&h, b.addr, timeout).await;
    let tcp = tokio::net::TcpStream::connect(h.addr("l")).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("http://x/")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"b");
    let idle_from = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the proxy closes an idle h2c connection")
        .unwrap()
        .ok();
    let took = idle_from.elapsed();
    assert!(
        took >= timeout - Duration::from_millis(50) && took < timeout * 5,
        "{took:?}"
    );
}

/// An HTTP/2 response the client gives no flow-control window ends once a
/// piece of it has waited `timeout_client_data` (the member connection it
/// streamed from closed, the stream reset), as HAProxy's `timeout client`
/// ends such a stream; the connection and its other streams go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_stream_starved_of_window_ends_alone_after_client_data() {
    use http_body_util::BodyExt;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    let h = Harness::new();
    let ended = Arc::new(AtomicUsize::new(0));
    let counted = ended.clone();
    // `/big` gets 64 KiB, anything else "ok"; counts connections that end.
    let m = member_serving(move |mut s| {
        let counted = counted.clone();
        async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                let body = match buf[..n].starts_with(b"GET /big ") {
                    true => vec![b'x'; 64 * 1024],
                    false => b"ok".to_vec(),
                };
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if s.write_all(head.as_bytes()).await.is_err() || s.write_all(&body).await.is_err()
                {
                    break;
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let timeout = Duration::from_millis(300);
    one_member_listener(&h, m, timeout).await;
    let mut send = h2c_connect(h.addr("l"), Some(1024)).await;
    // The head is not flow-controlled; the body stops at the 1 KiB window.
    let big = send.send_request(h2c_get("/big")).await.unwrap();
    assert_eq!(big.status(), 200);
    let starved_from = std::time::Instant::now();
    wait_for(
        "the member connection closed",
        Duration::from_secs(5),
        || async { ended.load(Ordering::SeqCst) == 1 },
    )
    .await;
    let took = starved_from.elapsed();
    assert!(took >= timeout - Duration::from_millis(50), "{took:?}");

    // The connection goes on (a new member connection: the last one closed).
    let small = send
        .send_request(h2c_get("/small"))
        .await
        .expect("the connection goes on");
    let body = small.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    // The starved stream was reset, short of its 64 KiB.
    assert!(big.into_body().collect().await.is_err());
}

/// An HTTP/2 client that reads a large response slowly, but steadily, gets
/// it whole, however long it takes in all: only a piece that waits for
/// window for `timeout_client_data` ends its stream, not a member that
/// pauses that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_slow_steady_reader_gets_the_whole_response() {
    use http_body_util::BodyExt;
    const LEN: usize = 512 * 1024;
    let h = Harness::new();
    let m = member_serving(|mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LEN}\r\n\r\n");
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&vec![b'x'; LEN]).await;
    })
    .await;
    let timeout = Duration::from_millis(300);
    one_member_listener(&h, m, timeout).await;
    let mut send = h2c_connect(h.addr("l"), Some(64 * 1024)).await;
    let mut body = send.send_request(h2c_get("/")).await.unwrap().into_body();
    let start = std::time::Instant::now();
    let mut got = 0;
    while let Some(frame) = body.frame().await {
        got += frame
            .expect("the response goes on")
            .into_data()
            .map_or(0, |d| d.len());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(got, LEN);
    assert!(start.elapsed() > timeout * 2, "{:?}", start.elapsed());

    // A member that pauses longer than timeout_client_data mid-body: the
    // wait is the member's (timeout_member_data), not the client's.
    let pauses = trickling_member(
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n",
        &[b"one", b"two"],
        timeout * 2,
    )
    .await;
    one_member_listener(&h, pauses, timeout).await;
    // A new connection: the last one has been idle too long by now.
    let mut send = h2c_connect(h.addr("l"), None).await;
    let resp = send.send_request(h2c_get("/")).await.unwrap();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("the member's pauses are not the client's");
    assert_eq!(&body.to_bytes()[..], b"onetwo");
}

/// A member that answers each connection's first request with `head`, then
/// sends `chunks` with `gap` before each, then holds the connection open.
async fn trickling_member(
    head: &'static [u8],
    chunks: &'static [&'static [u8]],
    gap: Duration,
) -> std::net::SocketAddr {
    member_serving(move |mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(head).await;
        for chunk in chunks {
            tokio::time::sleep(gap).await;
            let _ = s.write_all(chunk).await;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await
}

#[tokio::test]
async fn member_data_timeout_breaks_off_a_stalled_body_only() {
    let h = Harness::new();
    let limit = Duration::from_millis(300);
    let stalls = trickling_member(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf",
        &[],
        Duration::ZERO,
    )
    .await;
    // 5 chunks 150 ms apart: 750 ms in all, never 300 ms without a byte.
    let trickles = trickling_member(
        b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n",
        &[b"aaaa", b"bbbb", b"cccc", b"dddd", b"eeee"],
        Duration::from_millis(150),
    )
    .await;
    let mut listeners = Vec::new();
    for (id, m) in [("stalls", stalls), ("trickles", trickles)] {
        let p = pool(
            id,
            PoolProtocol::Http,
            LbAlgorithm::RoundRobin,
            vec![member(&format!("{id}-m"), m)],
        );
        let mut l = listener(id, ListenerProtocol::Http, Some(p));
        l.timeouts.member_data = limit;
        listeners.push(l);
    }
    h.apply_ok(config(listeners)).await;
    let req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    let (took, out) = raw_exchange(h.addr("stalls"), &[req], false).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("\r\n\r\nhalf"),
        "{out:?}"
    );
    assert!(took >= limit && took < limit * 5, "{took:?}");

    let (took, out) = raw_exchange(h.addr("trickles"), &[req], false).await;
    assert!(out.ends_with("\r\n\r\naaaabbbbccccddddeeee"), "{out:?}");
    assert!(took >= Duration::from_millis(750), "{took:?}");
}

#[tokio::test]
async fn insert_headers_keep_alive_and_h2c() {
    let h = Harness::new();
    let (a, b) = (HttpBackend::start("a").await, HttpBackend::start("b").await);
    let mut l = listener("l", ListenerProtocol::Http, Some(http_pool("p", &[&a, &b])));
    l.insert_headers = InsertHeaders {
        x_forwarded_for: true,
        x_forwarded_port: true,
        x_forwarded_proto: true,
    };
    h.apply_ok(config(vec![l])).await;
    let addr = h.addr("l");
    let c = client();
    let r = get(&c, addr, "/", &[("x-forwarded-for", "10.1.1.1")]).await;
    assert_eq!(r.headers["echo-x-forwarded-for"], "10.1.1.1, 127.0.0.1");
    assert_eq!(
        r.headers["echo-x-forwarded-port"],
        addr.port().to_string().as_str()
    );
    assert_eq!(r.headers["echo-x-forwarded-proto"], "http");
    assert_eq!(r.headers["echo-host"], addr.to_string().as_str());
    // Keep-alive: many requests, one client connection, alternating members.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(get(&c, addr, "/", &[]).await.body);
    }
    assert_eq!(seen, ["b", "a", "b", "a"]);
    assert_eq!(h.dp.stats()["l"].total_connections, 1);
    // h2c prior knowledge from the client; members still get HTTP/1.1 with a Host.
    let r = get(&h2c_client(), addr, "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["echo-host"], addr.to_string().as_str());
}

#[tokio::test]
async fn http_cookie_persistence() {
    let h = Harness::new();
    let (a, b) = (HttpBackend::start("a").await, HttpBackend::start("b").await);
    let mut p = http_pool("p", &[&a, &b]);
    p.session_persistence = Some(SessionPersistence::HttpCookie);
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Http, Some(p))]))
        .await;
    let c = client();
    let first = get(&c, h.addr("l"), "/", &[]).await;
    let cookie = first.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(cookie, format!("SRV={}", first.body));
    assert_eq!(first.headers["cache-control"], "private");
    for _ in 0..4 {
        let r = get(&c, h.addr("l"), "/", &[("cookie", &cookie)]).await;
        assert_eq!(r.body, first.body);
        assert!(!r.headers.contains_key("set-cookie"));
        // The inserted cookie never reaches the member ("insert indirect").
        assert!(!r.headers.contains_key("echo-cookie"), "{:?}", r.headers);
    }
    let mixed = format!("a=1; {cookie}; b=2");
    let r = get(&c, h.addr("l"), "/", &[("cookie", &mixed)]).await;
    assert_eq!(r.body, first.body);
    assert_eq!(r.headers["echo-cookie"], "a=1; b=2");
}

#[tokio::test]
async fn app_cookie_persistence_learns_from_the_member() {
    let h = Harness::new();
    let (a, b) = (HttpBackend::start("a").await, HttpBackend::start("b").await);
    let mut p = http_pool("p", &[&a, &b]);
    p.session_persistence = Some(SessionPersistence::AppCookie {
        cookie_name: "sid".into(),
    });
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Http, Some(p))]))
        .await;
    let (c, addr) = (client(), h.addr("l"));
    // No session yet: round robin.
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..2 {
        seen.push(get(&c, addr, "/", &[("cookie", "sid=unknown")]).await.body);
    }
    seen.sort();
    assert_eq!(seen, ["a", "b"]);
    // The member sets the cookie; requests carrying it stick to that member.
    let login = get(&c, addr, "/login", &[]).await;
    let set = login.headers["set-cookie"].to_str().unwrap();
    assert_eq!(set, format!("sid={}-session; Path=/; HttpOnly", login.body));
    let cookie = format!("theme=dark; sid={}-session", login.body);
    for _ in 0..5 {
        let r = get(&c, addr, "/", &[("cookie", &cookie)]).await;
        assert_eq!(r.body, login.body);
        // The application's cookie is the member's own: it is passed on.
        assert_eq!(r.headers["echo-cookie"], cookie.as_str());
    }
    // The other member's session sticks the other way.
    let login2 = get(&c, addr, "/login", &[]).await;
    assert_ne!(login2.body, login.body);
    let cookie2 = format!("sid={}-session", login2.body);
    for _ in 0..3 {
        assert_eq!(
            get(&c, addr, "/", &[("cookie", &cookie2)]).await.body,
            login2.body
        );
    }
}

#[tokio::test]
async fn source_ip_persistence_on_an_http_listener() {
    let h = Harness::new();
    let (a, b) = (HttpBackend::start("a").await, HttpBackend::start("b").await);
    let mut p = http_pool("p", &[&a, &b]);
    p.session_persistence = Some(SessionPersistence::SOURCE_IP);
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Http, Some(p))]))
        .await;
    let first = get(&client(), h.addr("l"), "/", &[]).await.body;
    for _ in 0..5 {
        // A new client connection each time, same source address.
        assert_eq!(get(&client(), h.addr("l"), "/", &[]).await.body, first);
    }
}

/// An address on 127.0.0.1 where nothing listens.
#[tokio::test]
async fn refused_member_is_retried_once_on_another() {
    let h = Harness::new();
    let live = HttpBackend::start("live").await;
    let (dead, _dead) = refusing_addr();
    let (dead2, _dead2) = refusing_addr();
    let p = pool(
        "p",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("dead", dead), member("live", live.addr)],
    );
    let only_dead = pool(
        "d",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("dead1", dead), member("dead2", dead2)],
    );
    h.apply_ok(config(vec![
        listener("l", ListenerProtocol::Http, Some(p)),
        listener("d", ListenerProtocol::Http, Some(only_dead)),
    ]))
    .await;
    let c = client();
    for _ in 0..4 {
        let r = get(&c, h.addr("l"), "/", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "live"));
    }
    // Round robin tries the dead member first every time. A request with a body:
    // nothing was sent to the dead member, so it is retried too.
    let r = request(&c, http::Method::POST, h.addr("l"), "/", &[], "payload").await;
    assert_eq!((r.status, r.body.as_str()), (200, "live:payload"));
    let s = h.dp.stats()["l"];
    assert_eq!((s.request_errors, s.member_errors), (0, 5), "{s:?}");
    // Both members refuse: one retry, then 502.
    assert_eq!(get(&c, h.addr("d"), "/", &[]).await.status, 502);
    let s = h.dp.stats()["d"];
    assert_eq!((s.request_errors, s.member_errors), (1, 2), "{s:?}");
}

#[tokio::test]
async fn member_connections_are_pooled_across_client_connections() {
    // Each worker thread reuses the member connections it opened: one worker
    // needs one connection for sequential requests, two workers one each
    // (32 client connections all landing on one worker: a chance of 2^-31).
    for (workers, requests) in [(2, 32), (1, 10)] {
        let h = Harness::with_workers(workers);
        let b = HttpBackend::start("b").await;
        let l = listener("l", ListenerProtocol::Http, Some(http_pool("p", &[&b])));
        h.apply_ok(config(vec![l])).await;
        for _ in 0..requests {
            // A new client (and client connection) for every request.
            assert_eq!(get(&client(), h.addr("l"), "/", &[]).await.body, "b");
        }
        assert_eq!(b.requests.load(Ordering::SeqCst), requests);
        assert_eq!(b.conns.load(Ordering::SeqCst), workers, "{workers} workers");
    }
    let (h, _) = one_http_listener().await;
    // A member that closes its side: the stale connection is replaced, not a 502.
    let closer = bad_member(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    h.apply_ok(config(vec![listener(
        "l",
        ListenerProtocol::Http,
        Some(pool(
            "p2",
            PoolProtocol::Http,
            LbAlgorithm::RoundRobin,
            vec![member("c", closer)],
        )),
    )]))
    .await;
    for _ in 0..5 {
        let r = get(&client(), h.addr("l"), "/", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
}

#[tokio::test]
async fn upgrade_is_passed_through() {
    let h = Harness::new();
    // A member that accepts any upgrade and then echoes.
    let l = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let maddr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n").await.unwrap();
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let p = pool(
        "p",
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member("m", maddr)],
    );
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Http, Some(p))]))
        .await;
    let mut s = tokio::net::TcpStream::connect(h.addr("l")).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"tunnelled").await.unwrap();
    let mut echo = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"tunnelled");
}

/// An HTTP member behind a PROXY header: reads a v1 or v2 header, then
/// answers every request of that connection with `src=<addr> dst=<addr>` as
/// the header named them. Counts connections accepted and still open; a
/// connection without a valid header is closed.
struct ProxyMember {
    addr: std::net::SocketAddr,
    conns: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn read_proxy_header(
    s: &mut tokio::net::TcpStream,
) -> std::io::Result<(std::net::SocketAddr, std::net::SocketAddr)> {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad PROXY header");
    let mut first = [0u8; 1];
    s.read_exact(&mut first).await?;
    if first[0] == b'P' {
        let mut line = vec![first[0]];
        while !line.ends_with(b"\r\n") && line.len() < 108 {
            s.read_exact(&mut first).await?;
            line.push(first[0]);
        }
        let line = String::from_utf8(line).map_err(|_| bad())?;
        let f: Vec<&str> = line.trim_end().split(' ').collect();
        let [_, _, src, dst, sport, dport] = f[..] else {
            return Err(bad());
        };
        let addr = |ip: &str, port: &str| -> std::io::Result<SocketAddr> {
            Ok(SocketAddr::new(
                ip.parse().map_err(|_| bad())?,
                port.parse().map_err(|_| bad())?,
            ))
        };
        return Ok((addr(src, sport)?, addr(dst, dport)?));
    }
    let mut fixed = [0u8; 15];
    s.read_exact(&mut fixed).await?;
    // Signature (12 bytes), version/command 0x21, TCP over IPv4 0x11, length.
    if first[0] != b'\r' || &fixed[..11] != b"\n\r\n\0\r\nQUIT\n" || fixed[11..13] != [0x21, 0x11] {
        return Err(bad());
    }
    let mut rest = vec![0u8; usize::from(u16::from_be_bytes([fixed[13], fixed[14]]))];
    s.read_exact(&mut rest).await?;
    let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    Ok((
        SocketAddr::new(ip(&rest[0..4]), port(&rest[8..10])),
        SocketAddr::new(ip(&rest[4..8]), port(&rest[10..12])),
    ))
}

impl ProxyMember {
    async fn start() -> Self {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let l = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        let (conns, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, o) = (conns.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    if let Ok((src, dst)) = read_proxy_header(&mut s).await {
                        let said = format!("src={src} dst={dst}");
                        let svc = hyper::service::service_fn(move |_req| {
                            let body = said.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from(body)),
                                ))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                            .await;
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, conns, open }
    }
}

/// A keep-alive client connection of its own (so the test knows its address).
async fn client_connection(
    addr: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
) {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = s.local_addr().unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    (local, sender)
}

async fn say(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
) -> String {
    use http_body_util::BodyExt;
    sender.ready().await.unwrap();
    let req = http::Request::get("/")
        .header("host", "app.example.com")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into()
}

#[tokio::test]
async fn proxy_pools_send_each_client_connections_own_proxy_header() {
    let h = Harness::new();
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for (id, protocol) in [("pp1", PoolProtocol::Proxy), ("pp2", PoolProtocol::ProxyV2)] {
        let m = ProxyMember::start().await;
        listeners.push(listener(
            id,
            ListenerProtocol::Http,
            Some(pool(
                id,
                protocol,
                LbAlgorithm::RoundRobin,
                vec![member(&format!("{id}-m"), m.addr)],
            )),
        ));
        members.push((id, m));
    }
    h.apply_ok(config(listeners)).await;

    for (id, m) in &members {
        let vip = h.addr(id);
        let (a, mut to_a) = client_connection(vip).await;
        let (b, mut to_b) = client_connection(vip).await;
        // Each client connection's requests reach the member on a connection
        // whose header names that client; keep-alive requests reuse it.
        for _ in 0..2 {
            assert_eq!(say(&mut to_a).await, format!("src={a} dst={vip}"), "{id}");
            assert_eq!(say(&mut to_b).await, format!("src={b} dst={vip}"), "{id}");
        }
        assert_eq!(m.conns.load(Ordering::SeqCst), 2, "{id}: one per client");
        // A's member connection is A's alone: it closes with A.
        drop(to_a);
        wait_for(
            "A's member connection closed",
            Duration::from_secs(5),
            || async { m.open.load(Ordering::SeqCst) == 1 },
        )
        .await;
        let (c, mut to_c) = client_connection(vip).await;
        assert_eq!(say(&mut to_c).await, format!("src={c} dst={vip}"), "{id}");
        assert_eq!(say(&mut to_b).await, format!("src={b} dst={vip}"), "{id}");
        assert_eq!(m.conns.load(Ordering::SeqCst), 3, "{id}");
    }
}

#[tokio::test]
async fn health_checks_of_proxy_pools_send_the_header_too() {
    let h = Harness::new();
    let m = ProxyMember::start().await;
    let mut p = pool(
        "hp",
        PoolProtocol::ProxyV2,
        LbAlgorithm::RoundRobin,
        vec![member("hp-m", m.addr)],
    );
    p.health_monitor = Some(HealthMonitorConfig {
        kind: HealthMonitorKind::Http {
            method: "GET".into(),
            url_path: "/".into(),
            expected_codes: "200".into(),
        },
        delay: Duration::from_millis(20),
        timeout: Duration::from_secs(1),
        max_retries: 1,
        max_retries_down: 1,
        admin_state_up: true,
    });
    h.apply_ok(config(vec![listener(
        "hl",
        ListenerProtocol::Http,
        Some(p),
    )]))
    .await;
    // A check without the header would be closed by the member: ERROR.
    wait_for("member ONLINE", Duration::from_secs(5), || async {
        h.dp.member_health().get("hp-m") == Some(&OperatingStatus::Online)
    })
    .await;
    let (c, mut to_c) = client_connection(h.addr("hl")).await;
    let vip = h.addr("hl");
    assert_eq!(say(&mut to_c).await, format!("src={c} dst={vip}"));
}
