//! Link delay without netem (this kernel has no `sch_netem`): an NFQUEUE delayer.
//!
//! A [`Delayer`] is an OS thread that enters a node's network namespace, binds an NFQUEUE
//! there (the `nfq` crate; the queue is per namespace, so its listener must live in the
//! namespace whose rule queues the packets), and installs nf_tables rules ([`crate::nft`])
//! sending the packets to delay to that queue. Each packet is held for the delay (plus a
//! random jitter if asked) and then accepted, in arrival order: a packet is never released
//! before the one queued ahead of it, so TCP sees a longer path, not reordering. Only
//! metadata is copied to user space (the verdict needs the packet id alone).
//!
//! What passes through netfilter's IP hooks is delayed (every IPv4/IPv6 packet of the node's
//! sockets); frames that a process sends on a packet socket (the node's own ARP replies and
//! neighbour advertisements) bypass netfilter and are not.
//!
//! Stopping removes the rules first (by handle: their base chain stays, since unregistering
//! a hook drops every packet queued in the namespace), then releases every held or still
//! queued packet at its due time, so nothing is dropped; rules queue with the `bypass` flag,
//! so a delayer that died leaves the link working (undelayed) rather than black.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nfq::{Queue, Verdict};

use crate::netns::enter_netns;
use crate::nft::{self, QueueRule};

/// Largest number of packets the kernel holds for the queue before it drops.
const QUEUE_MAX_LEN: u32 = 16_384;
/// How long the loop sleeps at most when nothing is due (the release precision).
const TICK: Duration = Duration::from_micros(500);

/// What a delayer did.
#[derive(Debug, Clone, Default)]
pub struct DelayStats {
    /// Packets held and released.
    pub packets: u64,
    /// Longest time a packet was held (from its arrival in user space to its verdict).
    pub max_hold: Duration,
    /// Verdicts the kernel refused, or receive errors (should be 0).
    pub errors: u64,
    /// The first of those errors.
    pub first_error: Option<String>,
}

impl DelayStats {
    fn error(&mut self, what: &str, e: std::io::Error) {
        self.errors += 1;
        self.first_error
            .get_or_insert_with(|| format!("{what}: {e}"));
    }

    /// Adds another delayer's numbers.
    pub fn add(&mut self, other: &DelayStats) {
        self.packets += other.packets;
        self.max_hold = self.max_hold.max(other.max_hold);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// Delays the packets that `rules` queue in one namespace.
pub struct Delayer {
    ns: String,
    delay: Duration,
    jitter: Duration,
    stop: Arc<AtomicBool>,
    packets: Arc<AtomicU64>,
    thread: Option<JoinHandle<DelayStats>>,
}

impl std::fmt::Debug for Delayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delayer")
            .field("ns", &self.ns)
            .field("delay", &self.delay)
            .field("jitter", &self.jitter)
            .finish()
    }
}

impl Delayer {
    /// Starts the delayer in `netns`: binds queue `queue` (every rule must name it), installs
    /// the rules, and holds each queued packet `delay` ± up to `jitter` (uniform) before
    /// accepting it in order. Returns once the rules are in place.
    pub fn start(
        netns: &str,
        queue: u16,
        rules: Vec<QueueRule>,
        delay: Duration,
        jitter: Duration,
    ) -> Result<Delayer, String> {
        assert!(
            rules.iter().all(|r| r.queue == queue),
            "every rule must queue to {queue}"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (st, pk, ns) = (stop.clone(), packets.clone(), netns.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("delay-{netns}-{queue}"))
            .spawn(move || {
                let (mut queue_handle, installed) = match setup(&ns, queue, &rules) {
                    Ok(q) => {
                        let _ = ready_tx.send(Ok(()));
                        q
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return DelayStats::default();
                    }
                };
                let stats = run(&mut queue_handle, delay, jitter, &st, &pk, &installed);
                let _ = queue_handle.unbind(queue);
                stats
            })
            .map_err(|e| format!("spawn delayer thread: {e}"))?;
        ready_rx
            .recv()
            .map_err(|_| "delayer thread died before it was ready".to_string())??;
        Ok(Delayer {
            ns: netns.to_string(),
            delay,
            jitter,
            stop,
            packets,
            thread: Some(thread),
        })
    }

    /// Packets released so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// The configured delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Removes the rules, releases what is held (each at its due time) and stops.
    pub fn stop(mut self) -> DelayStats {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> DelayStats {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_default(),
            None => DelayStats::default(),
        }
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Enters the namespace, binds the queue and installs the rules (in this order: a rule
/// without a listener would let packets bypass).
fn setup(
    ns: &str,
    queue: u16,
    rules: &[QueueRule],
) -> Result<(Queue, Vec<(QueueRule, u64)>), String> {
    enter_netns(ns).map_err(|e| format!("setns into {ns}: {e}"))?;
    let mut q = Queue::open().map_err(|e| format!("NFQUEUE socket in {ns}: {e}"))?;
    q.bind(queue)
        .map_err(|e| format!("bind NFQUEUE {queue} in {ns}: {e}"))?;
    // Metadata only; GSO packets as they are (no software segmentation for us).
    q.set_copy_range(queue, 0)
        .map_err(|e| format!("NFQUEUE copy range: {e}"))?;
    q.set_recv_gso(queue, true)
        .map_err(|e| format!("NFQUEUE GSO flag: {e}"))?;
    q.set_queue_max_len(queue, QUEUE_MAX_LEN)
        .map_err(|e| format!("NFQUEUE max length: {e}"))?;
    q.set_nonblocking(true);
    let mut installed = Vec::new();
    for r in rules {
        match nft::add_queue_rule(r) {
            Ok(handle) => installed.push((r.clone(), handle)),
            Err(e) => {
                for (done, handle) in &installed {
                    let _ = nft::delete_rule(done, *handle);
                }
                return Err(format!("in {ns}: {e}"));
            }
        }
    }
    Ok((q, installed))
}

/// xorshift64*: jitter needs no cryptography.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Rng((t.as_nanos() as u64) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[-j, +j]`, in nanoseconds.
    fn jitter_ns(&mut self, j: Duration) -> i128 {
        let j = j.as_nanos() as i128;
        if j == 0 {
            return 0;
        }
        (self.next() as i128 % (2 * j + 1)) - j
    }
}

/// Release time of a packet that arrived `now`: `delay` ± jitter, never before the packet
/// ahead of it.
fn due(now: Instant, delay: Duration, jitter_ns: i128, last: Option<Instant>) -> Instant {
    let hold = (delay.as_nanos() as i128 + jitter_ns).max(0) as u64;
    let at = now + Duration::from_nanos(hold);
    match last {
        Some(l) if l > at => l,
        _ => at,
    }
}

fn run(
    q: &mut Queue,
    delay: Duration,
    jitter: Duration,
    stop: &AtomicBool,
    packets: &AtomicU64,
    rules: &[(QueueRule, u64)],
) -> DelayStats {
    let mut stats = DelayStats::default();
    let mut rng = Rng::seeded();
    let mut held: VecDeque<(Instant, Instant, nfq::Message)> = VecDeque::new();
    let mut last_due: Option<Instant> = None;
    let mut rules_removed = false;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping && !rules_removed {
            // Nothing new gets queued from here on; what the kernel already queued is
            // still read below and released at its due time.
            for (r, handle) in rules {
                if let Err(e) = nft::delete_rule(r, *handle) {
                    stats.errors += 1;
                    stats.first_error.get_or_insert(e);
                }
            }
            rules_removed = true;
        }
        // Take everything the kernel has queued.
        let mut got_any = false;
        loop {
            match q.recv() {
                Ok(msg) => {
                    let now = Instant::now();
                    let at = due(now, delay, rng.jitter_ns(jitter), last_due);
                    last_due = Some(at);
                    held.push_back((now, at, msg));
                    got_any = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    stats.error("receive", e);
                    break;
                }
            }
        }
        // Release what is due, in order.
        let now = Instant::now();
        while held.front().is_some_and(|(_, at, _)| *at <= now) {
            let (arrived, _, mut msg) = held.pop_front().expect("front checked");
            msg.set_verdict(Verdict::Accept);
            if let Err(e) = q.verdict(msg) {
                stats.error("verdict", e);
            }
            stats.packets += 1;
            stats.max_hold = stats.max_hold.max(arrived.elapsed());
            packets.fetch_add(1, Ordering::Relaxed);
        }
        if rules_removed && held.is_empty() && !got_any {
            return stats;
        }
        let sleep = held
            .front()
            .map(|(_, at, _)| at.saturating_duration_since(Instant::now()))
            .unwrap_or(TICK)
            .min(TICK);
        if !sleep.is_zero() {
            std::thread::sleep(sleep);
        }
    }
}

/// Round trips to `addr` measured as TCP handshakes (connect time) from `rt`'s namespace:
/// `n` of them, one every 20 ms; failed or timed out attempts are left out.
pub async fn connect_rtts(
    rt: &crate::netns::NetnsRuntime,
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<Duration> {
    rt.run(async move {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let c =
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await;
            if let Ok(Ok(_)) = c {
                out.push(t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        out
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_times_keep_order() {
        let t0 = Instant::now();
        let d = Duration::from_millis(100);
        let a = due(t0, d, 0, None);
        assert_eq!(a, t0 + d);
        // A packet drawing a shorter jitter waits for the one ahead of it.
        let b = due(t0 + Duration::from_millis(1), d, -20_000_000, Some(a));
        assert_eq!(b, a);
        let c = due(t0 + Duration::from_millis(50), d, 0, Some(b));
        assert_eq!(c, t0 + Duration::from_millis(150));
        // Jitter never makes a negative hold.
        assert_eq!(due(t0, d, -500_000_000, None), t0);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let mut r = Rng(42);
        let j = Duration::from_millis(10);
        for _ in 0..10_000 {
            let x = r.jitter_ns(j);
            assert!(x.abs() <= j.as_nanos() as i128);
        }
        assert_eq!(r.jitter_ns(Duration::ZERO), 0);
    }
}
