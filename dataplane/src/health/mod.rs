//! Health monitors: one task per monitored member, with exact rise
//! (`max_retries`) and fall (`max_retries_down`) counts. Checks: TCP connect,
//! HTTP, HTTPS and TLS-HELLO ([`tls`]), UDP-CONNECT and PING ([`icmp`]).
//!
//! A newly monitored member starts `Unchecked`: it takes traffic (as in
//! haproxy) and its first success marks it ONLINE at once; `fall` consecutive
//! failures mark it ERROR, after which `rise` consecutive successes are
//! needed to bring it back.
//!
//! Members of `PROXY` / `PROXYV2` pools expect a PROXY header first on every
//! connection, so TCP-based checks send one (naming the check connection's
//! own ends) unless the member has a `monitor_address` or `monitor_port`:
//! HAProxy's default for `send-proxy` servers (`check-send-proxy` is implied
//! unless `addr` or `port` is set).

mod icmp;
mod tls;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::broadcast;

use crate::balancer::{Backend, Health};
use crate::config::{HealthMonitorConfig, HealthMonitorKind};
use crate::error::DataplaneError;
use crate::pool::PoolRuntime;
use crate::proxy_protocol::ProxyVersion;
use crate::status::OperatingStatus;

/// A member's operating status changed (published on [`crate::Dataplane::subscribe_health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub pool_id: String,
    pub member_id: String,
    pub status: OperatingStatus,
}

/// Parsed Octavia `expected_codes`: `200`, `200,202`, `200-204`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpectedCodes(Vec<RangeInclusive<u16>>);

impl ExpectedCodes {
    pub(crate) fn parse(s: &str) -> Result<Self, DataplaneError> {
        let invalid = || DataplaneError::InvalidConfig {
            field: "health_monitor.expected_codes",
            reason: format!("{s:?} is not like 200, 200,202 or 200-204"),
        };
        let code = |p: &str| -> Result<u16, DataplaneError> {
            let p = p.trim();
            match p.parse::<u16>() {
                Ok(c) if p.len() == 3 && (100..=599).contains(&c) => Ok(c),
                _ => Err(invalid()),
            }
        };
        let ranges = if let Some((lo, hi)) = s.split_once('-') {
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(invalid());
            }
            vec![lo..=hi]
        } else {
            s.split(',')
                .map(|c| code(c).map(|c| c..=c))
                .collect::<Result<_, _>>()?
        };
        Ok(Self(ranges))
    }

    pub(crate) fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|r| r.contains(&code))
    }
}

/// Checks that a monitor config can be run (called when a config is applied).
pub(crate) fn validate(hm: &HealthMonitorConfig) -> Result<(), DataplaneError> {
    if hm.max_retries == 0 || hm.max_retries_down == 0 {
        return Err(DataplaneError::InvalidConfig {
            field: "health_monitor.max_retries",
            reason: "max_retries and max_retries_down must be at least 1".into(),
        });
    }
    match &hm.kind {
        HealthMonitorKind::Http {
            method,
            url_path,
            expected_codes,
        }
        | HealthMonitorKind::Https {
            method,
            url_path,
            expected_codes,
        } => {
            ExpectedCodes::parse(expected_codes)?;
            http::Method::from_bytes(method.as_bytes()).map_err(|_| {
                DataplaneError::InvalidConfig {
                    field: "health_monitor.http_method",
                    reason: format!("{method:?} is not an HTTP method"),
                }
            })?;
            if !url_path.starts_with('/') || url_path.parse::<http::Uri>().is_err() {
                return Err(DataplaneError::InvalidConfig {
                    field: "health_monitor.url_path",
                    reason: format!("{url_path:?} is not an absolute path"),
                });
            }
        }
        HealthMonitorKind::Ping => {
            icmp::available().map_err(|reason| DataplaneError::UnsupportedMonitor {
                kind: "PING",
                reason,
            })?;
        }
        HealthMonitorKind::Tcp | HealthMonitorKind::TlsHello | HealthMonitorKind::UdpConnect => {}
    }
    Ok(())
}

/// Runs checks against one member forever (the pool aborts the task).
pub(crate) async fn monitor_member(
    backend: Arc<Backend>,
    hm: HealthMonitorConfig,
    pool: Weak<PoolRuntime>,
    events: broadcast::Sender<HealthEvent>,
) {
    let target = backend.config.monitor_addr();
    let own_target =
        backend.config.monitor_address.is_none() && backend.config.monitor_port.is_none();
    let proxy = pool
        .upgrade()
        .and_then(|p| ProxyVersion::of(p.config.protocol))
        .filter(|_| own_target);
    let expected = match &hm.kind {
        HealthMonitorKind::Http { expected_codes, .. }
        | HealthMonitorKind::Https { expected_codes, .. } => {
            ExpectedCodes::parse(expected_codes).ok()
        }
        _ => None,
    };
    let mut interval = tokio::time::interval(hm.delay.max(std::time::Duration::from_millis(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        interval.tick().await;
        let ok = tokio::time::timeout(
            hm.timeout,
            check(&hm.kind, target, proxy, expected.as_ref(), hm.timeout),
        )
        .await
        .unwrap_or(false);
        let current = backend.state.health();
        let next = if ok {
            failures = 0;
            successes = successes.saturating_add(1);
            match current {
                Health::Unchecked => Some(Health::Up),
                Health::Down if successes >= hm.max_retries => Some(Health::Up),
                _ => None,
            }
        } else {
            successes = 0;
            failures = failures.saturating_add(1);
            match current {
                Health::Up | Health::Unchecked if failures >= hm.max_retries_down => {
                    Some(Health::Down)
                }
                _ => None,
            }
        };
        let Some(next) = next else { continue };
        backend.state.set_health(next);
        let Some(pool) = pool.upgrade() else { return };
        pool.refresh();
        tracing::info!(pool = %pool.config.id, member = %backend.config.id, %target, health = ?next, "member health changed");
        let _ = events.send(HealthEvent {
            pool_id: pool.config.id.clone(),
            member_id: backend.config.id.clone(),
            status: OperatingStatus::of_member(&backend.config, next),
        });
    }
}

/// One check; `false` on any failure. The caller bounds it by `timeout`.
/// `proxy`: send this PROXY header first on TCP-based checks.
async fn check(
    kind: &HealthMonitorKind,
    target: SocketAddr,
    proxy: Option<ProxyVersion>,
    expected: Option<&ExpectedCodes>,
    timeout: Duration,
) -> bool {
    match kind {
        HealthMonitorKind::UdpConnect => return udp_check(target, timeout).await,
        HealthMonitorKind::Ping => {
            return icmp::ping(target.ip()).await.unwrap_or_else(|e| {
                tracing::debug!(%target, error = %e, "ping failed");
                false
            })
        }
        _ => {}
    }
    let Ok(mut stream) = TcpStream::connect(target).await else {
        return false;
    };
    if let Some(v) = proxy {
        let src = stream.local_addr().unwrap_or(target);
        if stream.write_all(&v.header(src, target)).await.is_err() {
            return false;
        }
    }
    match kind {
        HealthMonitorKind::Http {
            method, url_path, ..
        } => match expected {
            Some(expected) => http_check(stream, target, method, url_path, expected)
                .await
                .unwrap_or(false),
            None => false,
        },
        HealthMonitorKind::Https {
            method, url_path, ..
        } => {
            let (Some(expected), Ok(tls)) = (expected, tls::handshake(stream, target).await) else {
                return false;
            };
            http_check(tls, target, method, url_path, expected)
                .await
                .unwrap_or(false)
        }
        HealthMonitorKind::TlsHello => tls::handshake(stream, target).await.is_ok(),
        HealthMonitorKind::Tcp | HealthMonitorKind::UdpConnect | HealthMonitorKind::Ping => true,
    }
}

/// UDP-CONNECT (Octavia's `nc -uz` check): send a datagram on a connected
/// socket and wait a little; an ICMP port unreachable comes back as
/// `ECONNREFUSED` on the next receive (member down); an answer or silence
/// means up.
async fn udp_check(target: SocketAddr, timeout: Duration) -> bool {
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let Ok(socket) = UdpSocket::bind(bind).await else {
        return false;
    };
    if socket.connect(target).await.is_err() || socket.send(&[]).await.is_err() {
        return false;
    }
    let wait = (timeout / 2).min(Duration::from_secs(1));
    let answer = async {
        let mut buf = [0u8; 512];
        loop {
            // The ICMP error is pending as SO_ERROR, signalled as ERROR readiness.
            let ready = socket
                .ready(tokio::io::Interest::READABLE | tokio::io::Interest::ERROR)
                .await?;
            if let Some(e) = socket.take_error()? {
                return Err(e);
            }
            if ready.is_readable() {
                match socket.try_recv(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    res => return res,
                }
            }
            // Nothing pending after all: clear the readiness and wait again.
            let _ = socket.try_io(tokio::io::Interest::ERROR, || {
                Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
            });
        }
    };
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(_)) | Err(_) => true,
        Ok(Err(e)) => {
            tracing::debug!(%target, error = %e, "udp check failed");
            false
        }
    }
}

async fn http_check<S>(
    stream: S,
    target: SocketAddr,
    method: &str,
    path: &str,
    expected: &ExpectedCodes,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .method(http::Method::from_bytes(method.as_bytes())?)
        .uri(path)
        .header(http::header::HOST, target.to_string())
        .header(http::header::CONNECTION, "close")
        .header(http::header::USER_AGENT, "fulcrum-health-check")
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    conn.abort();
    Ok(expected.contains(resp.status().as_u16()))
}

#[cfg(test)]
mod tests {
    use super::ExpectedCodes;

    #[test]
    fn expected_codes_forms() {
        let one = ExpectedCodes::parse("200").unwrap();
        assert!(one.contains(200) && !one.contains(201));
        let list = ExpectedCodes::parse("200, 202").unwrap();
        assert!(list.contains(200) && list.contains(202) && !list.contains(201));
        let range = ExpectedCodes::parse("200-204").unwrap();
        assert!((200..=204).all(|c| range.contains(c)) && !range.contains(205));
        for bad in [
            "", "20", "2000", "abc", "204-200", "200-", "200,,202", "099",
        ] {
            assert!(ExpectedCodes::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
