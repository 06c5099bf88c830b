//! Client connections of HTTP listeners: accepted without a reactor
//! registration and registered only once an operation would block.
//!
//! Registering a socket with the reactor costs an `epoll_ctl(ADD)` when it
//! is accepted and an `epoll_ctl(DEL)` when it is dropped, and the fresh
//! registration's first "writable" event wakes the reactor once more.
//! HAProxy does none of that for a connection whose I/O never has to wait,
//! and a `Connection: close` request usually does not: its head is in the
//! socket by the time it is accepted and the response fits the socket's send
//! buffer. So a [`ClientStream`] starts as a plain non-blocking socket that
//! is read and written directly, and becomes a registered
//! `tokio::net::TcpStream` the first time a read or a write returns
//! `WouldBlock` (a keep-alive connection waiting for its next request, a
//! slow client, a large response); from then on it is tokio's stream.
//!
//! This only pays because hyper does not read a client socket while a
//! request without a body is in progress (`half_close`, see `http.rs`):
//! otherwise every request would start with a read that blocks.
//!
//! [`ClientStream::sniff`] reads the first bytes itself to tell HTTP/2 prior
//! knowledge from HTTP/1 (what `hyper_util`'s `auto` builder does with a
//! 24-byte read, one syscall more per connection) and replays them to hyper.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use socket2::{SockRef, Socket};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::wait::maybe_timeout;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most bytes one direct (unregistered) read asks for. Request heads are
/// far smaller; anything longer takes more reads.
const DIRECT_READ: usize = 4096;

thread_local! {
    /// Where direct reads land before they are copied out. Safe code has to
    /// initialise a buffer before reading into it; this one is initialised
    /// once per thread instead of once per read.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; DIRECT_READ]);
}

/// One read of at most `max` bytes through the scratch buffer: `read` fills
/// it, `take` gets the bytes read.
fn read_via_scratch(
    max: usize,
    read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    take: impl FnOnce(&[u8]),
) -> io::Result<usize> {
    SCRATCH.with_borrow_mut(|scratch| {
        let n = read(&mut scratch[..max.min(DIRECT_READ)])?;
        take(&scratch[..n]);
        Ok(n)
    })
}

/// The protocol a client connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientProtocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c): the connection began with the preface.
    Http2,
}

/// A listening socket whose connections are accepted as non-blocking
/// sockets with no reactor registration (tokio's `accept` registers each).
///
/// The reactor watches the listening socket through a `TcpStream`: tokio has
/// no safe way to register an arbitrary socket for readiness (`AsyncFd`'s
/// registration is `unsafe`), and a `TcpStream` is a registered socket with
/// readiness and `try_io`, which is all this uses of it (readable =
/// connections pending).
pub(crate) struct Acceptor {
    listening: TcpStream,
}

impl Acceptor {
    /// Takes over a bound, listening socket, registering it with the calling
    /// runtime's reactor. Sets `TCP_NODELAY` on it:
    /// accepted sockets inherit it (Linux), which saves a `setsockopt` per
    /// connection. And turns quick ACKs off (HAProxy does the same for its
    /// HTTP frontends): a client's request is then acknowledged by the
    /// response instead of by a segment of its own (unless the response
    /// takes longer than the delayed-ACK timer).
    pub(crate) fn new(listener: std::net::TcpListener) -> io::Result<Self> {
        let socket = Socket::from(listener);
        socket.set_tcp_nodelay(true)?;
        socket.set_tcp_quickack(false)?;
        Ok(Self {
            listening: TcpStream::from_std(socket.into())?,
        })
    }

    /// Accepts the next connection.
    pub(crate) async fn accept(&self) -> io::Result<(ClientStream, SocketAddr)> {
        loop {
            self.listening.readable().await?;
            if let Some(accepted) = self.try_accept() {
                return accepted;
            }
        }
    }

    /// Accepts a connection that is already waiting, if any (`None`: none is;
    /// the socket's readiness is cleared, so [`Self::accept`] waits again).
    pub(crate) fn try_accept(&self) -> Option<io::Result<(ClientStream, SocketAddr)>> {
        let flags = nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC;
        // `try_io` clears the readiness when the accept would block.
        let accepted = self.listening.try_io(Interest::READABLE, || {
            SockRef::from(&self.listening).accept4(flags)
        });
        let (socket, addr) = match accepted {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => return Some(Err(e)),
            Ok(a) => a,
        };
        let peer = addr
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "peer is not an IP address"));
        Some(peer.map(|peer| (ClientStream::new(socket), peer)))
    }
}

enum Io {
    /// Not registered with the reactor: read and written directly.
    Direct(Socket),
    Registered(TcpStream),
    /// Registration failed; every operation fails.
    Broken,
}

/// One client connection of an HTTP listener (see the module doc).
pub(crate) struct ClientStream {
    io: Io,
    /// Bytes [`Self::sniff`] read, returned by the next reads first.
    replay: Bytes,
}

impl ClientStream {
    fn new(socket: Socket) -> Self {
        Self {
            io: Io::Direct(socket),
            replay: Bytes::new(),
        }
    }

    /// The local address the client connected to.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.io {
            Io::Direct(s) => s.local_addr()?.as_socket().ok_or_else(not_ip),
            Io::Registered(s) => s.local_addr(),
            Io::Broken => Err(broken()),
        }
    }

    /// Reads the connection's first bytes and tells which protocol it
    /// speaks; the bytes are kept for the next reads. A client that closes
    /// before sending anything is `Http1` (hyper then sees the end of the
    /// stream). The first wait for bytes takes at most `timeout` (zero: no
    /// limit); each further one (the HTTP/2 preface coming in pieces) half
    /// the one before, so that however the bytes trickle in, all the waits
    /// take less than twice `timeout` (with no deadline kept: this is what a
    /// connection that has sent nothing yet holds, and it stays small).
    pub(crate) async fn sniff(&mut self, timeout: Duration) -> io::Result<ClientProtocol> {
        let mut seen = Vec::new();
        let mut waits = 0u32;
        let protocol = loop {
            match self.try_read_into(&mut seen) {
                Ok(0) => break ClientProtocol::Http1,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let wait = match timeout {
                        t if t.is_zero() => t,
                        t => (t / (1 << waits.min(20))).max(Duration::from_millis(1)),
                    };
                    waits += 1;
                    maybe_timeout(wait, self.readable())
                        .await
                        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if seen.len() >= H2_PREFACE.len() || !H2_PREFACE.starts_with(&seen) {
                break match seen.starts_with(H2_PREFACE) {
                    true => ClientProtocol::Http2,
                    false => ClientProtocol::Http1,
                };
            }
            // A proper prefix of the preface: hyper's HTTP/1 server would
            // not recognise HTTP/2 from it, so wait for the rest.
        };
        self.replay = Bytes::from(seen);
        Ok(protocol)
    }

    /// One read without waiting, appended to `dst`.
    fn try_read_into(&mut self, dst: &mut Vec<u8>) -> io::Result<usize> {
        let take = |b: &[u8]| dst.extend_from_slice(b);
        match &self.io {
            Io::Direct(s) => read_via_scratch(DIRECT_READ, |b| (&*s).read(b), take),
            Io::Registered(s) => read_via_scratch(DIRECT_READ, |b| s.try_read(b), take),
            Io::Broken => Err(broken()),
        }
    }

    /// Waits until the socket is readable (registering it).
    async fn readable(&mut self) -> io::Result<()> {
        self.registered()?.readable().await
    }

    /// The registered stream, registering the socket first if need be.
    fn registered(&mut self) -> io::Result<&mut TcpStream> {
        if let Io::Direct(_) = self.io {
            let Io::Direct(socket) = std::mem::replace(&mut self.io, Io::Broken) else {
                unreachable!("checked above")
            };
            self.io = Io::Registered(TcpStream::from_std(socket.into())?);
        }
        match &mut self.io {
            Io::Registered(s) => Ok(s),
            _ => Err(broken()),
        }
    }

    /// Runs `op` on the unregistered socket; `None` when it would block (or
    /// the socket is registered already): then use the registered stream.
    fn direct<T>(&self, mut op: impl FnMut(&Socket) -> io::Result<T>) -> Option<io::Result<T>> {
        let Io::Direct(socket) = &self.io else {
            return None;
        };
        loop {
            match op(socket) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                res => return Some(res),
            }
        }
    }
}

fn broken() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "client socket registration failed",
    )
}

fn not_ip() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "socket address is not IP")
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        let max = buf.remaining();
        let read = |s: &Socket| read_via_scratch(max, |b| (&*s).read(b), |b| buf.put_slice(b));
        if let Some(res) = this.direct(read) {
            return Poll::Ready(res.map(drop));
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(res) = this.direct(|mut s| s.write(buf)) {
            return Poll::Ready(res);
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(res) = this.direct(|mut s| s.write_vectored(bufs)) {
            return Poll::Ready(res);
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.io {
            Io::Direct(s) => Poll::Ready(s.shutdown(Shutdown::Write)),
            Io::Registered(s) => Pin::new(s).poll_shutdown(cx),
            Io::Broken => Poll::Ready(Err(broken())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (ClientStream, TcpStream) {
        let listener = crate::listener::bind_tcp("127.0.0.1:0".parse().unwrap(), 1)
            .unwrap()
            .remove(0);
        let addr = listener.local_addr().unwrap();
        let acceptor = Acceptor::new(listener).unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, peer) = acceptor.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        (server, client)
    }

    #[tokio::test]
    async fn sniff_tells_http2_preface_from_http1_and_replays() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(
            server.sniff(Duration::ZERO).await.unwrap(),
            ClientProtocol::Http1
        );
        let mut got = [0; 18];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");

        // The preface split over two writes: sniff waits for all of it.
        let (mut server, mut client) = pair().await;
        client.write_all(&H2_PREFACE[..10]).await.unwrap();
        let sniff = tokio::spawn(async move {
            let p = server.sniff(Duration::ZERO).await.unwrap();
            (p, server)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.write_all(&H2_PREFACE[10..]).await.unwrap();
        let (protocol, mut server) = sniff.await.unwrap();
        assert_eq!(protocol, ClientProtocol::Http2);
        let mut got = vec![0; H2_PREFACE.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, H2_PREFACE);
    }

    #[tokio::test]
    async fn sniff_times_out_on_a_silent_client() {
        let (mut server, _client) = pair().await;
        let err = server.sniff(Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn registers_when_an_operation_would_block() {
        let (mut server, mut client) = pair().await;
        // Nothing to read yet: the read registers the socket and waits.
        let reader = tokio::spawn(async move {
            let mut got = [0; 5];
            server.read_exact(&mut got).await.unwrap();
            assert!(matches!(server.io, Io::Registered(_)));
            (got, server)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.write_all(b"hello").await.unwrap();
        let (got, mut server) = reader.await.unwrap();
        assert_eq!(&got, b"hello");
        server.write_all(b"back").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"back");
    }

    #[tokio::test]
    async fn a_write_that_fits_needs_no_registration() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"ping").await.unwrap();
        server.sniff(Duration::ZERO).await.unwrap();
        let mut got = [0; 4];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(b"pong").await.unwrap();
        server.shutdown().await.unwrap();
        assert!(matches!(server.io, Io::Direct(_)));
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
    }
}
