//! `splice(2)` for the L4 copy loop: bytes go socket -> pipe -> socket inside
//! the kernel, never through user space (HAProxy's `option splice-auto`).
//!
//! Pipes are taken from a per-thread free list when a direction turns out to
//! be bulk (see `tcp::pump`) and given back, empty, when that direction has
//! been drained, so idle connections hold no pipe (two fds each) just as they
//! hold no copy buffer. All through nix's safe wrappers; no `unsafe` here.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved per `splice` call (the default pipe capacity).
const CHUNK: usize = 64 * 1024;
/// Spare pipes kept per worker thread.
const MAX_SPARE_PIPES: usize = 32;

thread_local! {
    static SPARE_PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// A non-blocking pipe used as the in-kernel buffer of one direction.
#[derive(Debug)]
pub(crate) struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
}

impl Pipe {
    /// A spare pipe of this thread, or a new one.
    pub(crate) fn take() -> io::Result<Self> {
        if let Some(p) = SPARE_PIPES.with(|s| s.borrow_mut().pop()) {
            return Ok(p);
        }
        let (rd, wr) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        Ok(Self { rd, wr })
    }

    /// Gives an empty pipe back to this thread's free list.
    pub(crate) fn give(self) {
        SPARE_PIPES.with(|s| {
            let mut spare = s.borrow_mut();
            if spare.len() < MAX_SPARE_PIPES {
                spare.push(self);
            }
        });
    }

    /// Moves what `from` has buffered (up to [`CHUNK`]) into the pipe.
    /// `Ok(0)`: end of stream; `WouldBlock`: nothing buffered (readiness cleared).
    pub(crate) fn fill(&self, from: &TcpStream) -> io::Result<usize> {
        from.try_io(Interest::READABLE, || {
            splice(
                from,
                None,
                &self.wr,
                None,
                CHUNK,
                SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
            )
            .map_err(io::Error::from)
        })
    }

    /// Moves `len` bytes from the pipe to `to`, waiting while `to` is full.
    pub(crate) async fn drain(&self, to: &TcpStream, mut len: usize) -> io::Result<()> {
        while len > 0 {
            to.writable().await?;
            let res = to.try_io(Interest::WRITABLE, || {
                splice(
                    &self.rd,
                    None,
                    to,
                    None,
                    len,
                    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
                )
                .map_err(io::Error::from)
            });
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => len -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
