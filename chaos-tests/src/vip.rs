//! Probing an address from the client namespace: the extension point for the VIP tests.
//!
//! [`VipProbe`] connects over TCP to `addr` every `interval` from the client namespace and
//! records each attempt; [`VipProbe::outages`] turns failed stretches into outage windows.
//! Pointed at a VIP listener, it measures failover; pointed at any TCP port (tests use a
//! node's admin port), it shows the probe itself works.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::netns::NetnsRuntime;

/// One probe attempt.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// When the attempt started.
    pub at: Instant,
    /// Whether the TCP handshake completed in time.
    pub ok: bool,
}

/// A window in which every attempt failed.
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    /// Start of the first failed attempt.
    pub from: Instant,
    /// Start of the next successful attempt (or of the last failed one if none followed).
    pub to: Instant,
}

impl Outage {
    /// The outage's length.
    pub fn len(&self) -> Duration {
        self.to - self.from
    }
}

/// Connects to an address periodically from a namespace and records the outcome.
pub struct VipProbe {
    probes: Arc<Mutex<Vec<Probe>>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl VipProbe {
    /// Starts probing `addr` every `interval` (each attempt may take up to `interval`).
    pub fn start(rt: &NetnsRuntime, addr: SocketAddr, interval: Duration) -> VipProbe {
        let probes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (probes.clone(), stop.clone());
        let task = rt.spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let at = Instant::now();
                let ok = matches!(
                    tokio::time::timeout(interval, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                );
                p.lock().expect("probes").push(Probe { at, ok });
                tokio::time::sleep_until((at + interval).into()).await;
            }
        });
        VipProbe {
            probes,
            stop,
            task: Some(task),
        }
    }

    /// Every attempt so far.
    pub fn probes(&self) -> Vec<Probe> {
        self.probes.lock().expect("probes").clone()
    }

    /// Whether the most recent attempt succeeded.
    pub fn last_ok(&self) -> Option<bool> {
        self.probes.lock().expect("probes").last().map(|p| p.ok)
    }

    /// The windows in which every attempt failed.
    pub fn outages(&self) -> Vec<Outage> {
        outages(&self.probes())
    }

    /// Stops probing and returns the outage windows.
    pub async fn finish_outages(self) -> Vec<Outage> {
        outages(&self.finish().await)
    }

    /// Stops probing and returns every attempt.
    pub async fn finish(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.probes()
    }
}

impl Drop for VipProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Failed stretches of a probe series.
pub fn outages(probes: &[Probe]) -> Vec<Outage> {
    let mut out = Vec::new();
    let mut start: Option<Instant> = None;
    let mut last_fail = None;
    for p in probes {
        match (p.ok, start) {
            (false, None) => {
                start = Some(p.at);
                last_fail = Some(p.at);
            }
            (false, Some(_)) => last_fail = Some(p.at),
            (true, Some(from)) => {
                out.push(Outage { from, to: p.at });
                start = None;
            }
            (true, None) => {}
        }
    }
    if let (Some(from), Some(to)) = (start, last_fail) {
        out.push(Outage { from, to });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_from_probes() {
        let t = Instant::now();
        let at = |ms| t + Duration::from_millis(ms);
        let series: Vec<Probe> = [(0, true), (10, false), (20, false), (30, true), (40, false)]
            .iter()
            .map(|(m, ok)| Probe {
                at: at(*m),
                ok: *ok,
            })
            .collect();
        let o = outages(&series);
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].len(), Duration::from_millis(20));
        assert_eq!(o[1].len(), Duration::ZERO);
    }
}
