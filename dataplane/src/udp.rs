//! The UDP proxy: one flow per client address, each with its own connected
//! socket towards the member chosen when the flow started. A flow ends after
//! `timeout_client_data` without datagrams in either direction (60 s when
//! that timeout is zero).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::io::{stopped, Activity};
use crate::listener::ListenerShared;
use crate::status::ActiveGuard;

const MAX_DATAGRAM: usize = 65_535;
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

struct Flow {
    upstream: Arc<UdpSocket>,
    activity: Arc<Activity>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.task.abort();
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
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<SocketAddr>();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((n, peer)) = received else { continue };
                let flow = match flows.entry(peer) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => match start_flow(peer, &socket, &shared, ended_tx.clone()).await {
                        Some(flow) => v.insert(flow),
                        None => continue,
                    },
                };
                shared.stats.bytes_in.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                flow.activity.touch_now();
                if let Err(e) = flow.upstream.send(&buf[..n]).await {
                    tracing::debug!(%peer, error = %e, "udp send to member failed");
                }
            }
            Some(peer) = ended_rx.recv() => { flows.remove(&peer); }
            _ = stopped(&mut stop) => break,
        }
    }
}

async fn start_flow(
    peer: SocketAddr,
    socket: &Arc<UdpSocket>,
    shared: &Arc<ListenerShared>,
    ended: mpsc::UnboundedSender<SocketAddr>,
) -> Option<Flow> {
    let (routes, guard) = shared.admit(peer)?;
    let Some(pool) = routes.default_pool.clone() else {
        shared.stats.error();
        return None;
    };
    let Some(lease) = pool.pick_for(peer, &mut Vec::new()) else {
        shared.stats.error();
        return None;
    };
    let member = lease.backend.addr;
    let bind: SocketAddr = if member.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let upstream = match UdpSocket::bind(bind).await {
        Ok(s) if s.connect(member).await.is_ok() => Arc::new(s),
        _ => {
            shared.stats.error();
            return None;
        }
    };
    let idle = match routes.config.timeouts.client_data {
        d if d.is_zero() => DEFAULT_IDLE,
        d => d,
    };
    let activity = Activity::new();
    let task = tokio::spawn(relay_back(
        peer,
        upstream.clone(),
        socket.clone(),
        shared.clone(),
        activity.clone(),
        idle,
        (guard, lease, pool, ended),
    ));
    Some(Flow {
        upstream,
        activity,
        task,
    })
}

/// Member -> client direction; ends the flow when idle.
async fn relay_back(
    peer: SocketAddr,
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    shared: Arc<ListenerShared>,
    activity: Arc<Activity>,
    idle: Duration,
    held: (
        ActiveGuard,
        crate::pool::Lease,
        Arc<crate::pool::PoolRuntime>,
        mpsc::UnboundedSender<SocketAddr>,
    ),
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = upstream.recv(&mut buf) => {
                let Ok(n) = received else { continue };
                activity.touch_now();
                if socket.send_to(&buf[..n], peer).await.is_ok() {
                    shared.stats.bytes_out.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
            }
            _ = activity.idle(idle) => break,
        }
    }
    let (_guard, _lease, pool, ended) = held;
    // SOURCE_IP persistence: the client's entry lives on from its last flow.
    pool.touch_source(peer);
    let _ = ended.send(peer);
}
