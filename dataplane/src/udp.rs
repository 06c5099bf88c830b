//! The UDP proxy: one flow per client address, each with its own connected
//! socket towards the member chosen when the flow started. A flow ends after
//! `timeout_client_data` without datagrams in either direction (60 s when
//! that timeout is zero). At the listener's connection limit, a new client's
//! flow takes the place of the oldest flow that has not settled (see
//! [`Flow::settled`]: a client that sent once, from a spoofed address maybe,
//! whether or not its member answered), as conntrack drops entries not yet
//! ASSURED first; with none such, the new client is refused.
//!
//! Access logs: one record per flow, when it ends (idle, or the listener
//! stopped), when switched on (see [`crate::access_log`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::access_log::{note, ConnLog, Termination};
use crate::io::Activity;
use crate::listener::ListenerShared;
use crate::pool::Tried;
use crate::status::ActiveGuard;
use crate::wait::stopped;

const MAX_DATAGRAM: usize = 65_535;
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

struct Flow {
    upstream: Arc<UdpSocket>,
    activity: Arc<Activity>,
    /// Bytes from the client, kept only for the access log.
    bytes_in: Option<Arc<AtomicU64>>,
    /// Relays the member's datagrams back; holds the listening socket.
    /// `None` once taken to be waited for.
    task: Option<tokio::task::JoinHandle<()>>,
    /// What the relay task and the table both know of the flow.
    state: Arc<FlowState>,
    /// Which flow of its client this is (see [`Started`]).
    serial: u64,
    /// When the flow began.
    began: Instant,
    /// The member has answered and the client still sent [`SETTLE_AFTER`]
    /// after the flow began (conntrack's ASSURED for UDP): a flow in use,
    /// which is not evicted to make room.
    settled: bool,
    /// Counts the flow as active until it leaves the table.
    _guard: ActiveGuard,
}

#[derive(Debug, Default)]
struct FlowState {
    /// The member has sent a datagram back.
    replied: AtomicBool,
    /// Ended to make room (see [`evict_unsettled`]).
    evicted: AtomicBool,
}

/// How long after it began a flow's client must still send, its member having
/// answered, for the flow to settle (conntrack's 2 s for UDP streams).
const SETTLE_AFTER: Duration = Duration::from_secs(2);

/// The flows of one listening socket in the order they started, to find the
/// oldest one not settled: entries for flows that have ended (or been
/// followed by another flow of the same client, with another serial) or have
/// settled since are skipped, and dropped when they pile up.
#[derive(Default)]
struct Started {
    order: VecDeque<(SocketAddr, u64)>,
    next_serial: u64,
}

impl Started {
    fn push(&mut self, peer: SocketAddr, flows: &HashMap<SocketAddr, Flow>) -> u64 {
        if self.order.len() >= 2 * flows.len() + 64 {
            self.order
                .retain(|(p, serial)| flows.get(p).is_some_and(|f| evictable(f, *serial)));
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        self.order.push_back((peer, serial));
        serial
    }
}

fn evictable(flow: &Flow, serial: u64) -> bool {
    flow.serial == serial && !flow.settled
}

/// Ends the oldest flow not settled, if there is one (dropping it releases
/// its place at the connection limit at once).
fn evict_unsettled(flows: &mut HashMap<SocketAddr, Flow>, started: &mut Started) -> bool {
    while let Some((peer, serial)) = started.order.pop_front() {
        if flows.get(&peer).is_some_and(|f| evictable(f, serial)) {
            if let Some(flow) = flows.remove(&peer) {
                flow.state.evicted.store(true, Ordering::Relaxed);
                tracing::debug!(%peer, "udp flow not settled evicted at the connection limit");
            }
            return true;
        }
    }
    false
}

impl Drop for Flow {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Relays datagrams until `stop` turns true; then all flows end.
pub(crate) async fn serve(
    socket: UdpSocket,
    shared: Arc<ListenerShared>,
    mut stop: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut started = Started::default();
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((n, peer)) = received else { continue };
                if !flows.contains_key(&peer) {
                    let admitted = shared.admit_making_room(peer, || evict_unsettled(&mut flows, &mut started));
                    let Some(admitted) = admitted else { continue };
                    let serial = started.push(peer, &flows);
                    let Some(flow) = start_flow(peer, admitted, serial, &socket, &shared, ended_tx.clone()).await else {
                        continue;
                    };
                    flows.insert(peer, flow);
                }
                let Some(flow) = flows.get_mut(&peer) else { continue };
                if !flow.settled && flow.state.replied.load(Ordering::Relaxed) {
                    flow.settled = flow.began.elapsed() >= SETTLE_AFTER;
                }
                shared.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(c) = &flow.bytes_in {
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
                flow.activity.touch_now();
                if let Err(e) = flow.upstream.send(&buf[..n]).await {
                    tracing::debug!(%peer, error = %e, "udp send to member failed");
                }
            }
            Some((peer, serial)) = ended_rx.recv() => {
                if flows.get(&peer).is_some_and(|f| f.serial == serial) {
                    flows.remove(&peer);
                }
            }
            _ = stopped(&mut stop) => break,
        }
    }
    // The flows' tasks hold the listening socket (they answer clients from
    // it): the socket is closed, and its address free for a listener that
    // binds it next, only once they are gone.
    for (_, mut flow) in flows.drain() {
        if let Some(task) = flow.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn start_flow(
    peer: SocketAddr,
    (routes, guard): (Arc<crate::listener::Routes>, ActiveGuard),
    serial: u64,
    socket: &Arc<UdpSocket>,
    shared: &Arc<ListenerShared>,
    ended: mpsc::UnboundedSender<(SocketAddr, u64)>,
) -> Option<Flow> {
    let bytes_in = shared.access_log.on().then(Arc::<AtomicU64>::default);
    let mut log = bytes_in
        .as_ref()
        .map(|c| ConnLog::udp(peer, &routes, Some(c.clone())));
    let Some(pool) = routes.default_pool.clone() else {
        note(&mut log, Termination::NoMember);
        shared.stats.error();
        return None;
    };
    let Some(lease) = pool.pick_for(peer, &mut Tried::default()) else {
        note(&mut log, Termination::NoMember);
        shared.stats.error();
        return None;
    };
    let member = lease.backend.addr;
    if let Some(log) = &mut log {
        log.set_member(member, &lease.backend.id);
    }
    let bind: SocketAddr = if member.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let upstream = match UdpSocket::bind(bind).await {
        Ok(s) if s.connect(member).await.is_ok() => Arc::new(s),
        _ => {
            note(&mut log, Termination::ProxyError);
            shared.stats.error();
            return None;
        }
    };
    let idle = match routes.config.timeouts.client_data {
        d if d.is_zero() => DEFAULT_IDLE,
        d => d,
    };
    let activity = Arc::new(Activity::new());
    let state = Arc::new(FlowState::default());
    let task = tokio::spawn(relay_back(
        peer,
        upstream.clone(),
        socket.clone(),
        shared.clone(),
        activity.clone(),
        idle,
        Held {
            _lease: lease,
            pool,
            ended,
            serial,
            log: FlowLog {
                log,
                state: state.clone(),
            },
        },
    ));
    Some(Flow {
        upstream,
        activity,
        bytes_in,
        task: Some(task),
        state,
        serial,
        began: Instant::now(),
        settled: false,
        _guard: guard,
    })
}

/// What a flow's relay task holds until the flow ends.
struct Held {
    /// Counts the flow on its member (least connections).
    _lease: crate::pool::Lease,
    pool: Arc<crate::pool::PoolRuntime>,
    /// Where to say that the flow (`serial`) ended.
    ended: mpsc::UnboundedSender<(SocketAddr, u64)>,
    serial: u64,
    log: FlowLog,
}

/// A flow's access log record, which says `evicted` if the flow was (its
/// relay task is aborted then, and this dropped with it).
struct FlowLog {
    log: Option<Box<ConnLog>>,
    state: Arc<FlowState>,
}

impl Drop for FlowLog {
    fn drop(&mut self) {
        if self.state.evicted.load(Ordering::Relaxed) {
            note(&mut self.log, Termination::Evicted);
        }
    }
}

/// Datagrams a flow passes on per wake-up before it lets other tasks run.
const RELAY_BATCH: usize = 64;

/// What became of one datagram from a member.
enum Relayed {
    Sent,
    /// The client's socket could not take it at once: a copy, to send when it can.
    Blocked(Vec<u8>),
    /// Sending failed; dropped (UDP).
    Failed,
}

thread_local! {
    /// Where a worker thread receives members' datagrams (see [`relay_back`]).
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; MAX_DATAGRAM].into_boxed_slice());
}

/// Receives one datagram from `upstream` without waiting and sends it to
/// `peer` on `socket`: its length and what became of it; `None` when
/// `upstream` has nothing (or failed: its readiness then says so again).
fn relay_ready(
    upstream: &UdpSocket,
    socket: &UdpSocket,
    peer: SocketAddr,
) -> Option<(usize, Relayed)> {
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        let n = upstream.try_recv(&mut buf).ok()?;
        let datagram = &buf[..n];
        let relayed = match socket.try_send_to(datagram, peer) {
            Ok(_) => Relayed::Sent,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Relayed::Blocked(datagram.to_vec())
            }
            Err(_) => Relayed::Failed,
        };
        Some((n, relayed))
    })
}

/// Member -> client direction; ends the flow when idle. The flow's access
/// log record (in `held`) is emitted when this ends or is aborted.
///
/// A flow has no receive buffer of its own: it waits until its socket is
/// readable, then takes the datagrams into the worker thread's scratch
/// buffer and passes each on at once (a 64 KiB buffer per flow cost every
/// flow its RSS, and zeroing it, a new flow its CPU).
async fn relay_back(
    peer: SocketAddr,
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    shared: Arc<ListenerShared>,
    activity: Arc<Activity>,
    idle: Duration,
    held: Held,
) {
    let Held {
        _lease,
        pool,
        ended,
        serial,
        log: mut flow_log,
    } = held;
    let log = &mut flow_log.log;
    loop {
        tokio::select! {
            readable = upstream.readable() => {
                // Only a runtime shutting down fails the wait: end the flow
                // rather than spin on it.
                if readable.is_err() {
                    break;
                }
                // What is there, up to a batch (then the wait above, which
                // counts against the task's budget, lets other tasks run); a
                // datagram the client's socket cannot take at once is kept
                // and awaited.
                for _ in 0..RELAY_BATCH {
                    let Some((n, relayed)) = relay_ready(&upstream, &socket, peer) else {
                        break;
                    };
                    activity.touch_now();
                    flow_log.state.replied.store(true, Ordering::Relaxed);
                    if let Some(log) = log {
                        log.member_sent(Instant::now());
                    }
                    let sent = match relayed {
                        Relayed::Sent => true,
                        Relayed::Blocked(datagram) => socket.send_to(&datagram, peer).await.is_ok(),
                        Relayed::Failed => false,
                    };
                    if sent {
                        shared.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        if let Some(log) = log {
                            log.add_bytes_out(n);
                        }
                    }
                }
            }
            _ = activity.idle(idle) => break,
        }
    }
    note(log, Termination::IdleTimeout);
    // SOURCE_IP persistence: the client's entry lives on from its last flow.
    pool.touch_source(peer);
    let _ = ended.send((peer, serial));
}
