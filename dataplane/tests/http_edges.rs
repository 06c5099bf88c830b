//! The HTTP path at its edges: hangs, timeouts, framing and accounting.
//!
//! Each test pins one behaviour that a plain request/response exchange never
//! reaches: a member connection still busy with an upload, an upgraded
//! tunnel, a member closing a pooled connection as a request goes out on it,
//! a listener stopped under a client sending half a head, a client
//! that stops reading, an upload slower than `timeout_member_data`, a broken
//! chunked upload, least-connections over a streaming body, two `Host`
//! headers, a response framed twice, and a `GET` with a chunked body.
//! Members are scripted on raw TCP where the test needs to control the bytes;
//! timeouts are set to a few hundred milliseconds so that the tests stay fast.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::access_records::records;
use common::*;
use fulcrum_dataplane::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

// ---- helpers ----

/// A listener `id` over a pool of the single member `m`.
fn single(id: &str, m: SocketAddr) -> ListenerConfig {
    let p = pool(
        &format!("{id}-pool"),
        PoolProtocol::Http,
        LbAlgorithm::RoundRobin,
        vec![member(&format!("{id}-m"), m)],
    );
    listener(id, ListenerProtocol::Http, Some(p))
}

/// Reads until the end of a message head; returns the head and the bytes
/// read past it, or `None` if the peer closed first.
async fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(end + 4);
            return Some((String::from_utf8_lossy(&got).into_owned(), rest));
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The proxy's response head on `s` (panics if it does not come in 5 s).
async fn response_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(5), read_head(s))
        .await
        .expect("a response head in time")
        .expect("a response head, not a close")
}

/// The value of header `name` in `head` (names compared case-insensitively).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads and discards until the proxy closes `s` (end of stream or reset);
/// panics if that takes longer than `within`.
async fn until_closed(s: &mut TcpStream, within: Duration) {
    let mut buf = vec![0u8; 64 << 10];
    tokio::time::timeout(within, async {
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
    .expect("the proxy closes the connection");
}

/// Reads everything the proxy sends until it closes (5 s at most).
async fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the proxy closes the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `raw` on a new connection to `addr` and reads until the proxy
/// closes it (see [`read_all`]).
async fn send_and_read_all(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    read_all(&mut s).await
}

/// A chunked body, decoded (no trailers, no extensions).
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).ok()?, 16).ok()?;
        body = &body[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

fn active(h: &Harness, listener: &str) -> u64 {
    h.dp.stats()[listener].active_connections
}

// ---- access log records (fix 6) ----

// ---- 1. member connection reuse ----

/// A member that refuses a `POST` at once (413, while its body is still
/// coming) and then takes in the rest of the upload; it answers a `GET`
/// with `fresh`. Counts its connections.
async fn refusing_member(conns: Arc<AtomicUsize>) -> SocketAddr {
    member_serving(move |mut s| {
        conns.fetch_add(1, Ordering::SeqCst);
        async move {
            while let Some((head, _)) = read_head(&mut s).await {
                if head.starts_with("POST") {
                    let refused = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";
                    if s.write_all(refused).await.is_ok() {
                        let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
                    }
                    return;
                }
                let fresh = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh";
                if s.write_all(fresh).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// A member connection whose response has ended while the request body is
/// still being sent is not handed to the next request (hyper takes no new
/// request on it before the body is out): that request gets a new one.
#[tokio::test]
async fn a_member_connection_still_uploading_is_not_reused() {
    let h = Harness::new();
    let conns = Arc::new(AtomicUsize::new(0));
    let m = refusing_member(conns.clone()).await;
    h.apply_ok(config(vec![single("l", m)])).await;

    // An upload of 10 MB that stalls after 64 KiB; the member refuses it at once.
    let mut uploader = TcpStream::connect(h.addr("l")).await.unwrap();
    let head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n";
    uploader.write_all(head).await.unwrap();
    uploader.write_all(&vec![b'u'; 64 << 10]).await.unwrap();
    let (refused, _) = response_head(&mut uploader).await;
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused:?}");

    // The uploader keeps its connection open; another client is served
    // promptly, over a second member connection.
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        get(&client(), h.addr("l"), "/", &[]),
    )
    .await
    .expect("the second request is answered, not parked on the busy connection");
    assert_eq!((r.status, r.body.as_str()), (200, "fresh"));
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    drop(uploader);
}

/// A member that closes a connection, unanswered, when a request other than
/// `GET /warm` comes on it after an earlier one: the close of an idle
/// keep-alive connection crossing the proxy's next request. Everything else
/// it answers (keep-alive). Records the request line of every request it
/// reads.
async fn closing_member(seen: Arc<std::sync::Mutex<Vec<String>>>) -> SocketAddr {
    member_serving(move |mut s| {
        let seen = seen.clone();
        async move {
            let mut first = true;
            while let Some((head, _)) = read_head(&mut s).await {
                let line = head.lines().next().unwrap_or_default().to_string();
                if !first && !line.starts_with("GET /warm ") {
                    seen.lock().unwrap().push(line);
                    return;
                }
                seen.lock().unwrap().push(line);
                first = false;
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if s.write_all(ok).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// A pooled connection that the member closes as a request goes out on it
/// (after sitting idle): a bodiless idempotent request is sent once more on
/// a new connection and answered; a `POST`, or a request with a body, is not
/// (502), and the member sees it once.
#[tokio::test]
async fn a_keep_alive_close_crossing_an_idempotent_request_sends_it_again() {
    let h = Harness::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let m = closing_member(seen.clone()).await;
    h.apply_ok(config(vec![single("l", m)])).await;

    // (request line, body, answer, member_errors after it: a broken attempt
    // sent again counts)
    let cases: [(&str, &[u8], &str, u64); 4] = [
        ("GET /get", b"", "HTTP/1.1 200", 1),
        ("DELETE /delete", b"", "HTTP/1.1 200", 2),
        ("POST /post", b"", "HTTP/1.1 502", 2),
        ("PUT /put", b"body", "HTTP/1.1 502", 2),
    ];
    for (line, body, status, member_errors) in cases {
        // A fresh member connection, answered and pooled; then idle past the
        // point where the proxy keeps a copy to send again (250 ms): time
        // passing is the condition here.
        let warm = send_and_read_all(
            h.addr("l"),
            b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(warm.starts_with("HTTP/1.1 200"), "{warm:?}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        seen.lock().unwrap().clear();

        let mut raw = format!(
            "{line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        let answer = send_and_read_all(h.addr("l"), &raw).await;
        assert!(answer.starts_with(status), "{line}: {answer:?}");
        let times = match status {
            "HTTP/1.1 200" => 2,
            _ => 1,
        };
        let expected = vec![format!("{line} HTTP/1.1"); times];
        assert_eq!(*seen.lock().unwrap(), expected, "{line}");
        assert_eq!(h.dp.stats()["l"].member_errors, member_errors, "{line}");
    }
}

/// The same close crossing a `GET`, from a member that has also stopped
/// listening: sending again needs a new connection, which is refused. The
/// client gets 502, and both failed attempts count as member errors.
#[tokio::test]
async fn a_request_sent_again_to_a_member_that_went_away_gets_502() {
    let h = Harness::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let m = listener.local_addr().unwrap();
    let member = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let first = read_head(&mut s).await.expect("the warm-up request");
        assert!(first.0.starts_with("GET /warm "), "{first:?}");
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        s.write_all(ok).await.unwrap();
        let second = read_head(&mut s).await.expect("the request");
        drop(listener);
        drop(s);
        second.0
    });
    h.apply_ok(config(vec![single("l", m)])).await;

    let warm = b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = send_and_read_all(h.addr("l"), warm).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // Idle past the point where the proxy keeps a copy to send again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let get = b"GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = send_and_read_all(h.addr("l"), get).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer:?}");
    assert!(member.await.unwrap().starts_with("GET /get "));
    let stats = &h.dp.stats()["l"];
    assert_eq!(
        (stats.member_errors, stats.request_errors),
        (2, 1),
        "{stats:?}"
    );
}

// ---- 2. upgrade tunnels ----

/// A member that switches every connection to `websocket` and then echoes.
async fn upgrading_member() -> SocketAddr {
    member_serving(|mut s| async move {
        let Some((_, early)) = read_head(&mut s).await else {
            return;
        };
        let switched = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        if s.write_all(switched).await.is_err() || s.write_all(&early).await.is_err() {
            return;
        }
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

/// An upgraded connection counts in `active_connections` while it is open,
/// passes bytes for longer than its idle timeout as long as they move, and
/// is closed once nothing has moved for that long.
#[tokio::test]
async fn an_upgrade_tunnel_is_counted_and_closed_when_idle() {
    let h = Harness::new();
    let idle = Duration::from_millis(400);
    let mut l = single("l", upgrading_member().await);
    l.timeouts.client_data = idle;
    l.timeouts.member_data = idle;
    h.apply_ok(config(vec![l])).await;

    let mut s = TcpStream::connect(h.addr("l")).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, _) = response_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head:?}");

    // Bytes every 150 ms for 900 ms, longer than the idle timeout: echoed.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let ping = format!("ping{i}");
        s.write_all(ping.as_bytes()).await.unwrap();
        let mut echo = vec![0u8; ping.len()];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut echo))
            .await
            .expect("echo in time")
            .expect("the tunnel is open");
        assert_eq!(echo, ping.as_bytes());
        assert_eq!(
            active(&h, "l"),
            1,
            "the open tunnel is an active connection"
        );
    }

    // Then silence: the tunnel is closed after the idle timeout.
    let quiet = Instant::now();
    until_closed(&mut s, Duration::from_secs(3)).await;
    // (`quiet` starts a little after the last byte moved.)
    let took = quiet.elapsed();
    assert!(took >= idle - Duration::from_millis(50), "{took:?}");
    wait_for(
        "the tunnel no longer counted",
        Duration::from_secs(2),
        || async { active(&h, "l") == 0 },
    )
    .await;
}

// ---- 3. a removed listener's connections drain ----

/// A listener removed while a client has sent half a request head: its
/// connection drains, and the client still meets `timeout_client_data`
/// instead of being kept open forever.
#[tokio::test]
async fn a_half_head_is_closed_after_client_data_on_a_removed_listener() {
    let h = Harness::new();
    let b = HttpBackend::start("b").await;
    let client_data = Duration::from_millis(800);
    let mut l = single("l", b.addr);
    l.timeouts.client_data = client_data;
    h.apply_ok(config(vec![l])).await;

    let mut s = TcpStream::connect(h.addr("l")).await.unwrap();
    let half = b"GET / HTTP/1.1\r\nHo";
    s.write_all(half).await.unwrap();
    let sent = Instant::now();
    wait_for(
        "the proxy to read the half head",
        Duration::from_secs(2),
        || async { h.dp.stats()["l"].bytes_in >= half.len() as u64 },
    )
    .await;

    // The listener goes; the connection is left to drain.
    h.apply_ok(config(vec![])).await;
    assert!(
        sent.elapsed() < client_data - Duration::from_millis(100),
        "removing the listener took too long for this test: {:?}",
        sent.elapsed()
    );
    let mut buf = [0u8; 64];
    assert!(
        matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "still open right after the listener was removed"
    );

    until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(
        sent.elapsed() >= client_data - Duration::from_millis(5),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(b.requests.load(Ordering::SeqCst), 0);
}

// ---- 4. a client that stops reading ----

/// A member that answers each request with a 32 MiB body.
async fn big_member() -> SocketAddr {
    member_serving(|mut s| async move {
        if read_head(&mut s).await.is_none() {
            return;
        }
        const MIB: usize = 1 << 20;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 32 * MIB);
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let block = vec![b'x'; MIB];
        for _ in 0..32 {
            if s.write_all(&block).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// A client that asks for a large response and never reads it is closed
/// after about `timeout_client_data` (the response cannot be written), not
/// held with its member forever.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_client_data() {
    let h = Harness::new();
    let client_data = Duration::from_millis(400);
    let mut l = single("l", big_member().await);
    l.timeouts.client_data = client_data;
    h.apply_ok(config(vec![l])).await;

    // A small receive buffer, so that the proxy's writes block soon.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(h.addr("l")).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let asked = Instant::now();
    wait_for(
        "the client connection counted",
        Duration::from_secs(2),
        || async { active(&h, "l") == 1 },
    )
    .await;

    wait_for(
        "the stuck client connection closed",
        Duration::from_secs(3),
        || async { active(&h, "l") == 0 },
    )
    .await;
    assert!(
        asked.elapsed() >= client_data - Duration::from_millis(5),
        "{:?}",
        asked.elapsed()
    );
    // The client sees its connection end (after what was already sent).
    until_closed(&mut s, Duration::from_secs(5)).await;
}

// ---- 5. timeout_member_data and uploads ----

/// A member that reads a request's whole body (by its `Content-Length`)
/// and then answers `got <n>`.
async fn reading_member() -> SocketAddr {
    member_serving(|mut s| async move {
        let Some((head, mut body)) = read_head(&mut s).await else {
            return;
        };
        let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut buf = [0u8; 4096];
        while body.len() < len {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
        let got = format!("got {}", body.len());
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{got}",
            got.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
    })
    .await
}

/// `timeout_member_data` counts from the last upload bytes: an upload that
/// takes three times as long but keeps moving is answered; a member that
/// never answers still gets 504 once the upload is done.
#[tokio::test]
async fn member_data_counts_from_the_last_upload_bytes() {
    let h = Harness::new();
    let member_data = Duration::from_millis(500);
    // Accepts, reads nothing, never answers.
    let silent = member_serving(|s| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let mut listeners = Vec::new();
    for (id, m) in [("reads", reading_member().await), ("silent", silent)] {
        let mut l = single(id, m);
        l.timeouts.member_data = member_data;
        listeners.push(l);
    }
    h.apply_ok(config(listeners)).await;

    // 15 pieces of 100 bytes, 100 ms apart: 1.5 s of upload.
    let mut s = TcpStream::connect(h.addr("reads")).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1500\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let start = Instant::now();
    for _ in 0..15 {
        if s.write_all(&[b'u'; 100]).await.is_err() {
            break; // answered (and closed) before the upload was done
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = read_all(&mut s).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("got 1500"),
        "{out:?}"
    );
    assert!(start.elapsed() > member_data * 2, "{:?}", start.elapsed());

    // The whole body at once to a member that never answers: 504.
    let mut s = TcpStream::connect(h.addr("silent")).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await
    .unwrap();
    let sent = Instant::now();
    let out = read_all(&mut s).await;
    let took = sent.elapsed();
    assert!(out.starts_with("HTTP/1.1 504"), "{out:?}");
    assert!(
        took >= member_data - Duration::from_millis(5) && took < member_data * 5,
        "{took:?}"
    );
}

/// On a keep-alive connection each request's `timeout_member_data` counts
/// from that request's start, though the connection keeps one timer for all
/// of them: a request still waiting when an earlier request's deadline comes
/// is not failed by it, after a 504 the next request has its full time, and
/// a limit shortened by a reconfiguration holds at once.
#[tokio::test]
async fn member_data_counts_from_each_requests_start_on_a_keep_alive_connection() {
    let h = Harness::new();
    let limit = Duration::from_millis(400);
    // Answers `GET /wait/<ms>` after that many milliseconds, keep-alive.
    let m = member_serving(|mut s| async move {
        while let Some((head, _)) = read_head(&mut s).await {
            let ms = head
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.strip_prefix("/wait/"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if s.write_all(ok).await.is_err() {
                return;
            }
        }
    })
    .await;
    let mut l = single("l", m);
    l.timeouts.member_data = Duration::from_secs(60);
    h.apply_ok(config(vec![l.clone()])).await;
    let mut c = TcpStream::connect(h.addr("l")).await.unwrap();
    // One request on `c`: its status line and how long it took.
    async fn ask(c: &mut TcpStream, wait_ms: u64) -> (String, Duration) {
        let start = Instant::now();
        let req = format!("GET /wait/{wait_ms} HTTP/1.1\r\nHost: x\r\n\r\n");
        c.write_all(req.as_bytes()).await.unwrap();
        let (head, mut body) = response_head(c).await;
        let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
        let mut buf = [0u8; 512];
        while body.len() < len {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0, "the proxy closed mid-body");
            body.extend_from_slice(&buf[..n]);
        }
        let status = head.lines().next().unwrap_or_default().to_string();
        (status, start.elapsed())
    }

    // A first request under a 60 s limit; then the limit becomes 400 ms
    // (the listener keeps its socket and this connection).
    let (status, _) = ask(&mut c, 0).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    l.timeouts.member_data = limit;
    h.apply_ok(config(vec![l])).await;

    // The second of these is still waiting when the first one's deadline
    // (400 ms after the first of them started) comes: it is answered.
    for _ in 0..2 {
        let (status, took) = ask(&mut c, 250).await;
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "{status} after {took:?}"
        );
    }
    // A member slower than the limit: 504, the limit after this request's start.
    let (status, took) = ask(&mut c, 2_000).await;
    assert!(status.starts_with("HTTP/1.1 504"), "{status}");
    assert!(
        took >= limit - Duration::from_millis(5) && took < limit * 3,
        "{took:?}"
    );
    // The same client connection goes on, each request with its full time.
    for _ in 0..2 {
        let (status, took) = ask(&mut c, 250).await;
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "{status} after {took:?}"
        );
    }
}

// ---- 6. a broken upload is the client's fault ----

/// A client whose chunked upload breaks (invalid chunk framing) mid-body is
/// logged as `client_abort` with a 400, not as the member's reset, and the
/// member is not counted as failing.
#[tokio::test]
async fn a_broken_chunked_upload_is_a_client_abort() {
    access_records::install();
    let h = Harness::new();
    h.dp.set_access_log(true);
    let received = Arc::new(AtomicUsize::new(0));
    let m = {
        let received = received.clone();
        // Reads whatever comes and never answers.
        member_serving(move |mut s| {
            let received = received.clone();
            async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    received.fetch_add(n, Ordering::SeqCst);
                }
            }
        })
        .await
    };
    h.apply_ok(config(vec![single("broken", m)])).await;

    let mut s = TcpStream::connect(h.addr("broken")).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    wait_for(
        "the first chunk at the member",
        Duration::from_secs(5),
        || async { received.load(Ordering::SeqCst) > 0 },
    )
    .await;
    s.write_all(b"zz\r\nnot a chunk\r\n").await.unwrap();
    let out = read_all(&mut s).await;

    wait_for("the request's record", Duration::from_secs(5), || async {
        !records("broken").is_empty()
    })
    .await;
    let r = records("broken").remove(0);
    assert_eq!(
        (r["termination"].as_str(), r["status"].as_str()),
        ("client_abort", "400"),
        "{r:?}"
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    assert_eq!(h.dp.stats()["broken"].member_errors, 0);
}

/// A client that stops partway through its upload is timed out as the
/// client's fault: 408, `client_abort`, not a member timeout; by
/// `timeout_member_data` when that comes first, and by
/// `timeout_client_data` also when there is no member timeout (such a
/// request used to hold its member connection forever).
#[tokio::test]
async fn a_stalled_upload_is_the_clients_timeout() {
    let short = Duration::from_millis(300);
    for (name, member_data, client_data) in [
        ("member_first", short, Duration::from_secs(5)),
        ("no_member_limit", Duration::ZERO, short),
    ] {
        let took = stalled_upload(name, member_data, client_data).await;
        assert!(
            took >= short - Duration::from_millis(50),
            "{name}: {took:?}"
        );
    }
}

/// Sends half an upload to a listener with these timeouts whose member
/// reads everything and never answers; checks the 408 and its record, and
/// returns how long the answer took.
async fn stalled_upload(name: &str, member_data: Duration, client_data: Duration) -> Duration {
    access_records::install();
    let h = Harness::new();
    h.dp.set_access_log(true);
    let m = member_serving(|mut s| async move {
        let mut buf = [0u8; 4096];
        while let Ok(1..) = s.read(&mut buf).await {}
    })
    .await;
    let mut l = single(name, m);
    l.timeouts.member_data = member_data;
    l.timeouts.client_data = client_data;
    h.apply_ok(config(vec![l])).await;

    let mut s = TcpStream::connect(h.addr(name)).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhello")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (head, _) = tokio::time::timeout(Duration::from_secs(5), read_head(&mut s))
        .await
        .expect("answered")
        .expect("a response head");
    let took = started.elapsed();
    assert!(head.starts_with("HTTP/1.1 408"), "{name}: {head:?}");
    wait_for("the request's record", Duration::from_secs(5), || async {
        !records(name).is_empty()
    })
    .await;
    let r = records(name).remove(0);
    assert_eq!(r["termination"], "client_abort", "{name}: {r:?}");
    took
}

// ---- 7. least connections ----

/// A member that answers `/slow` with a chunked body of one byte every
/// 100 ms (for 5 s) and anything else at once; both name it in `X-Member`
/// (and the quick body is the name).
async fn streaming_member(name: &'static str) -> SocketAddr {
    member_serving(move |mut s| async move {
        while let Some((head, _)) = read_head(&mut s).await {
            if head.starts_with("GET /slow ") {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Member: {name}\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..50 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if s.write_all(b"1\r\nx\r\n").await.is_err() {
                        return;
                    }
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
                return;
            }
            let quick = format!(
                "HTTP/1.1 200 OK\r\nX-Member: {name}\r\nContent-Length: {}\r\n\r\n{name}",
                name.len()
            );
            if s.write_all(quick.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// `LEAST_CONNECTIONS` counts a member until its response body is done:
/// while one member streams a long body, quick requests all go to the other.
#[tokio::test]
async fn least_connections_counts_a_member_until_its_body_is_done() {
    let h = Harness::new();
    let p = pool(
        "p",
        PoolProtocol::Http,
        LbAlgorithm::LeastConnections,
        vec![
            member("a", streaming_member("a").await),
            member("b", streaming_member("b").await),
        ],
    );
    h.apply_ok(config(vec![listener("l", ListenerProtocol::Http, Some(p))]))
        .await;

    let mut slow = TcpStream::connect(h.addr("l")).await.unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = response_head(&mut slow).await;
    let streaming = header(&head, "x-member").expect("X-Member").to_string();
    let other = if streaming == "a" { "b" } else { "a" };

    let c = client();
    let mut served = Vec::new();
    for _ in 0..6 {
        served.push(get(&c, h.addr("l"), "/", &[]).await.body);
    }
    assert!(
        served.iter().all(|m| m == other),
        "{streaming} streams; quick requests went to {served:?}"
    );
    drop(slow);
}

// ---- 8. two Host headers ----

/// A request with two `Host` headers is refused (400) before any member.
#[tokio::test]
async fn two_host_headers_are_refused() {
    let h = Harness::new();
    let b = HttpBackend::start("b").await;
    h.apply_ok(config(vec![single("l", b.addr)])).await;
    let out = send_and_read_all(
        h.addr("l"),
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    assert_eq!(b.requests.load(Ordering::SeqCst), 0);
}

// ---- 9. a response framed twice ----

/// A member response with both `Content-Length` and `Transfer-Encoding:
/// chunked` is framed by the chunks (RFC 9112 §6.3): the client gets the
/// whole de-chunked body, not one cut at the stale length.
#[tokio::test]
async fn a_response_with_length_and_chunks_keeps_its_whole_body() {
    let h = Harness::new();
    let m = member_serving(|mut s| async move {
        if read_head(&mut s).await.is_some() {
            let resp =
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
                         a\r\n0123456789\r\n5\r\nabcde\r\n0\r\n\r\n";
            let _ = s.write_all(resp).await;
            let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
        }
    })
    .await;
    h.apply_ok(config(vec![single("l", m)])).await;

    let out = send_and_read_all(
        h.addr("l"),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = out.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{out:?}");
    let body = match header(head, "transfer-encoding") {
        Some(te) if te.eq_ignore_ascii_case("chunked") => {
            assert_eq!(header(head, "content-length"), None, "{out:?}");
            dechunk(body.as_bytes()).expect("well-formed chunks")
        }
        _ => body.as_bytes().to_vec(),
    };
    assert_eq!(String::from_utf8_lossy(&body), "0123456789abcde", "{out:?}");
}

// ---- 10. a GET with a chunked body ----

/// A `GET` whose body is chunked reaches the member with its body (sent
/// chunked, as it has no length).
#[tokio::test]
async fn a_chunked_get_body_reaches_the_member() {
    let h = Harness::new();
    // Answers with the body it received, de-chunked, or `none`.
    let m = member_serving(|mut s| async move {
        let Some((head, mut rest)) = read_head(&mut s).await else {
            return;
        };
        let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let mut buf = [0u8; 4096];
        while chunked && !rest.ends_with(b"0\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
        let got = match chunked {
            true => dechunk(&rest).unwrap_or_else(|| b"bad chunks".to_vec()),
            false => b"none".to_vec(),
        };
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", got.len());
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&got).await;
    })
    .await;
    h.apply_ok(config(vec![single("l", m)])).await;

    let out = send_and_read_all(
        h.addr("l"),
        b"GET /q HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    assert!(out.ends_with("\r\n\r\nhello world"), "{out:?}");
}

// ---- 11. Expect: 100-continue ----

/// A client that asks `Expect: 100-continue` and waits for the interim
/// answer before sending its body (curl does, for larger uploads) gets one
/// `100 Continue`, then the member's final response to the whole body.
#[tokio::test]
async fn a_client_expecting_100_continue_gets_it_once_then_the_answer() {
    let h = Harness::new();
    let b = HttpBackend::start("b").await;
    h.apply_ok(config(vec![single("l", b.addr)])).await;

    let mut s = TcpStream::connect(h.addr("l")).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let (interim, rest) = response_head(&mut s).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
    assert!(rest.is_empty(), "{rest:?}");
    s.write_all(b"hello").await.unwrap();
    let (head, mut body) = response_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    let mut buf = [0u8; 64];
    while body.len() < "b:hello".len() {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the body in time")
            .unwrap();
        assert!(n > 0, "closed before the body: {body:?}");
        body.extend_from_slice(&buf[..n]);
    }
    assert_eq!(body, b"b:hello");
}

// ---- 12. responses without a body ----

/// A `HEAD` response keeps the member's `Content-Length` (the length a `GET`
/// would have) and has no body; `204` and `304` have none either. The client
/// connection then carries its next request normally.
#[tokio::test]
async fn bodiless_responses_keep_their_framing_headers() {
    let h = Harness::new();
    // Answers per request on one connection: HEAD -> 200 with a length and
    // no body; /nc -> 204; /nm -> 304 with a length; anything else -> "ok".
    let m = member_serving(|mut s| async move {
        while let Some((head, _)) = read_head(&mut s).await {
            let answer: &[u8] = if head.starts_with("HEAD ") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
            } else if head.starts_with("GET /nc ") {
                b"HTTP/1.1 204 No Content\r\n\r\n"
            } else if head.starts_with("GET /nm ") {
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"x\"\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            };
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    h.apply_ok(config(vec![single("l", m)])).await;

    let mut s = TcpStream::connect(h.addr("l")).await.unwrap();
    s.write_all(b"HEAD /f HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, rest) = response_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    assert_eq!(header(&head, "content-length"), Some("1234"), "{head:?}");
    assert!(rest.is_empty(), "{rest:?}");
    for (path, status) in [("/nc", "204"), ("/nm", "304")] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let (head, rest) = response_head(&mut s).await;
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head:?}");
        assert!(rest.is_empty(), "{path}: {rest:?}");
        if status == "304" {
            assert_eq!(header(&head, "etag"), Some("\"x\""), "{head:?}");
        }
    }
    s.write_all(b"GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = read_all(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    assert!(out.ends_with("\r\n\r\nok"), "{out:?}");
}

// ---- 13. oversized heads ----

/// A header value of `kib` KiB.
fn big_value(kib: usize) -> String {
    "v".repeat(kib * 1024)
}

/// A request head with more headers than the proxy parses, or over 64 KiB,
/// gets 431 and never reaches the member; a member response with too many
/// headers or a head over 64 KiB gets the client a 502. A 60 KiB head goes
/// through both ways.
#[tokio::test]
async fn oversized_heads_are_refused_on_either_side() {
    let h = Harness::new();
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    // Answers `/many` with 300 headers, `/KiB/N` with an N KiB header.
    let m = member_serving(move |mut s| {
        let counted = counted.clone();
        async move {
            while let Some((head, _)) = read_head(&mut s).await {
                counted.fetch_add(1, Ordering::SeqCst);
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let mut answer = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
                match path.strip_prefix("/KiB/") {
                    Some(n) => {
                        answer.push_str(&format!("X-Big: {}\r\n", big_value(n.parse().unwrap())))
                    }
                    None => (0..300).for_each(|i| answer.push_str(&format!("X-H{i}: v\r\n"))),
                }
                answer.push_str("\r\nok");
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    h.apply_ok(config(vec![single("l", m)])).await;

    let mut many = String::from("GET /many HTTP/1.1\r\nHost: x\r\n");
    for i in 0..300 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let out = send_and_read_all(h.addr("l"), many.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
    // Over 64 KiB: 431, unless the proxy's close (with the rest of the head
    // unread) resets the connection before the client reads it.
    let big = format!(
        "GET /KiB/1 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        big_value(70)
    );
    let mut s = TcpStream::connect(h.addr("l")).await.unwrap();
    let _ = s.write_all(big.as_bytes()).await; // may meet the reset
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the proxy closes the connection");
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 431") || read.is_err() && out.is_empty(),
        "{read:?} {out:?}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0);

    let fits = format!(
        "GET /KiB/60 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        big_value(60)
    );
    let out = send_and_read_all(h.addr("l"), fits.as_bytes()).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("ok"),
        "{}",
        &out[..100.min(out.len())]
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    for path in ["/many", "/KiB/70"] {
        let get = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let out = send_and_read_all(h.addr("l"), get.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 502"), "{path}: {out:?}");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

// ---- 14. a request framed twice ----

/// A request with both `Content-Length` and `Transfer-Encoding: chunked` (a
/// smuggling vector) is framed by the chunks: the member gets it chunked
/// with no length, and the client connection closes after the answer
/// rather than trusting what follows.
#[tokio::test]
async fn a_request_framed_twice_goes_chunked_and_closes_the_connection() {
    let h = Harness::new();
    // Answers with the framing headers it saw and the body it read.
    let m = member_serving(|mut s| async move {
        while let Some((head, mut rest)) = read_head(&mut s).await {
            let mut buf = [0u8; 4096];
            while !rest.ends_with(b"0\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => rest.extend_from_slice(&buf[..n]),
                }
            }
            let body = format!(
                "cl={:?} te={:?} body={}",
                header(&head, "content-length"),
                header(&head, "transfer-encoding"),
                String::from_utf8_lossy(&dechunk(&rest).unwrap_or_default()),
            );
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            if s.write_all(head.as_bytes()).await.is_err()
                || s.write_all(body.as_bytes()).await.is_err()
            {
                return;
            }
        }
    })
    .await;
    h.apply_ok(config(vec![single("l", m)])).await;

    let out = send_and_read_all(
        h.addr("l"),
        b"POST /q HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    assert!(
        out.ends_with("\r\n\r\ncl=None te=Some(\"chunked\") body=hello"),
        "{out:?}"
    );
}

// ---- 15. HTTP/1.0 clients and pipelining ----

/// An HTTP/1.0 request without `Host` reaches the member as HTTP/1.1 with
/// the member's address as `Host`, and its connection closes after the
/// answer (1.0 without keep-alive); two requests written at once on a
/// keep-alive connection are both answered, in order.
#[tokio::test]
async fn http10_clients_and_pipelined_requests() {
    let h = Harness::new();
    let b = HttpBackend::start("b").await;
    h.apply_ok(config(vec![single("l", b.addr)])).await;

    let out = send_and_read_all(h.addr("l"), b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.0 200"), "{out:?}");
    assert_eq!(header(&out, "echo-host"), Some(b.addr.to_string().as_str()));
    assert!(out.ends_with("\r\n\r\nb"), "{out:?}");

    let out = send_and_read_all(
        h.addr("l"),
        b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none\
          POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo",
    )
    .await;
    let first = out.find("b:one").expect("the first answer");
    let second = out.find("b:two").expect("the second answer");
    assert!(first < second, "{out:?}");
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out:?}");
}
