//! Stick tables for session persistence: `SOURCE_IP` (client address ->
//! member) and `APP_COOKIE` (cookie value -> member).
//!
//! A table is bounded (`capacity` entries, like HAProxy's `stick-table size`)
//! and every entry expires `ttl` after its last use. When a table is full,
//! expired entries go first; if none has expired, the eighth of the entries
//! closest to expiry is evicted in one pass, so a full table costs O(1)
//! amortised per insert. Tables belong to a pool and are carried across
//! reconfigurations while the pool's persistence settings are unchanged.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::SessionPersistence;

/// Entries per table (Octavia renders `stick-table ... size 10k`).
pub(crate) const TABLE_CAPACITY: usize = 10_000;
/// `SOURCE_IP` entry lifetime without `persistence_timeout` (keepalived's default).
pub(crate) const DEFAULT_SOURCE_IP_TIMEOUT: Duration = Duration::from_secs(360);
/// `APP_COOKIE` entry lifetime after its last use.
pub(crate) const APP_COOKIE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Stored cookie values are cut to this many bytes (HAProxy's `type string len 64`).
pub(crate) const COOKIE_KEY_LEN: usize = 64;

/// A bounded map from a client key to a member id, with expiry.
#[derive(Debug)]
pub(crate) struct StickTable<K> {
    entries: Mutex<HashMap<K, Entry>>,
    capacity: usize,
    ttl: Duration,
}

#[derive(Debug)]
struct Entry {
    member: Arc<str>,
    expires: Instant,
}

impl<K: Hash + Eq + Clone> StickTable<K> {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The member stuck to `key`, refreshing the entry's expiry.
    pub(crate) fn get<Q>(&self, key: &Q, now: Instant) -> Option<Arc<str>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.lock();
        let e = entries.get_mut(key)?;
        if e.expires <= now {
            entries.remove(key);
            return None;
        }
        e.expires = now + self.ttl;
        Some(e.member.clone())
    }

    /// Sticks `key` to `member` (replacing any previous member).
    pub(crate) fn put(&self, key: K, member: &Arc<str>, now: Instant) {
        let mut entries = self.lock();
        let expires = now + self.ttl;
        if let Some(e) = entries.get_mut(&key) {
            if !Arc::ptr_eq(&e.member, member) {
                e.member = member.clone();
            }
            e.expires = expires;
            return;
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.expires > now);
        }
        if entries.len() >= self.capacity {
            // Evict the eighth of the table closest to expiry (least recently used).
            let mut by_expiry: Vec<Instant> = entries.values().map(|e| e.expires).collect();
            let cut = (self.capacity / 8).max(1).min(by_expiry.len() - 1);
            let (_, threshold, _) = by_expiry.select_nth_unstable(cut);
            let threshold = *threshold;
            entries.retain(|_, e| e.expires > threshold);
        }
        entries.insert(
            key,
            Entry {
                member: member.clone(),
                expires,
            },
        );
    }

    /// Number of entries (expired ones included until they are purged).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A pool's persistence state for the algorithms that need a table.
#[derive(Debug)]
pub(crate) enum Stick {
    SourceIp {
        table: StickTable<IpAddr>,
        mask: Option<IpAddr>,
    },
    AppCookie {
        table: StickTable<Box<str>>,
        cookie_name: String,
    },
}

impl Stick {
    /// The table a pool with this persistence needs, if any (`HTTP_COOKIE` needs none).
    pub(crate) fn for_config(sp: Option<&SessionPersistence>) -> Option<Self> {
        match sp? {
            SessionPersistence::SourceIp {
                timeout,
                granularity,
            } => Some(Self::SourceIp {
                table: StickTable::new(
                    TABLE_CAPACITY,
                    timeout
                        .filter(|t| !t.is_zero())
                        .unwrap_or(DEFAULT_SOURCE_IP_TIMEOUT),
                ),
                mask: *granularity,
            }),
            SessionPersistence::AppCookie { cookie_name } => Some(Self::AppCookie {
                table: StickTable::new(TABLE_CAPACITY, APP_COOKIE_TIMEOUT),
                cookie_name: cookie_name.clone(),
            }),
            SessionPersistence::HttpCookie => None,
        }
    }
}

/// The stick-table key of a client: its address under the granularity mask
/// (IPv4-mapped IPv6 addresses count as IPv4; a mask of the other family is ignored).
pub(crate) fn source_key(client: SocketAddr, mask: Option<IpAddr>) -> IpAddr {
    let ip = match client.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match (ip, mask) {
        (IpAddr::V4(a), Some(IpAddr::V4(m))) => IpAddr::V4((u32::from(a) & u32::from(m)).into()),
        (IpAddr::V6(a), Some(IpAddr::V6(m))) => IpAddr::V6((u128::from(a) & u128::from(m)).into()),
        _ => ip,
    }
}

/// A cookie value as stored in a table: cut to [`COOKIE_KEY_LEN`] bytes (at a char boundary).
pub(crate) fn cookie_key(value: &str) -> &str {
    if value.len() <= COOKIE_KEY_LEN {
        return value;
    }
    let mut end = COOKIE_KEY_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_last_use() {
        let t: StickTable<u32> = StickTable::new(10, Duration::from_secs(10));
        let m: Arc<str> = Arc::from("m1");
        let t0 = Instant::now();
        t.put(1, &m, t0);
        assert_eq!(
            t.get(&1, t0 + Duration::from_secs(9)).as_deref(),
            Some("m1")
        );
        // The read refreshed it: still there 9 s after the read.
        assert_eq!(
            t.get(&1, t0 + Duration::from_secs(18)).as_deref(),
            Some("m1")
        );
        assert_eq!(t.get(&1, t0 + Duration::from_secs(29)), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_full_table_evicts_expired_then_least_recently_used() {
        let t: StickTable<u32> = StickTable::new(16, Duration::from_secs(100));
        let m: Arc<str> = Arc::from("m");
        let t0 = Instant::now();
        for k in 0..16 {
            t.put(k, &m, t0 + Duration::from_secs(u64::from(k)));
        }
        t.get(&0, t0 + Duration::from_secs(50)); // 0 is now the most recent
        t.put(100, &m, t0 + Duration::from_secs(51));
        assert!(t.len() <= 16);
        assert!(t.get(&0, t0 + Duration::from_secs(52)).is_some());
        assert!(t.get(&100, t0 + Duration::from_secs(52)).is_some());
        assert!(t.get(&1, t0 + Duration::from_secs(52)).is_none());
        assert!(t.get(&15, t0 + Duration::from_secs(52)).is_some());
        // Everything expired: the next insert purges it all.
        for k in 200..300 {
            t.put(k, &m, t0 + Duration::from_secs(1000));
        }
        assert!(t.len() <= 16);
    }

    #[test]
    fn source_keys_follow_the_granularity() {
        let c: SocketAddr = "10.1.2.3:4000".parse().unwrap();
        let mask = Some("255.255.255.0".parse().unwrap());
        assert_eq!(source_key(c, None), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(source_key(c, mask), "10.1.2.0".parse::<IpAddr>().unwrap());
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:1".parse().unwrap();
        assert_eq!(
            source_key(mapped, mask),
            "10.1.2.0".parse::<IpAddr>().unwrap()
        );
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(source_key(v6, mask), v6.ip());
        let m6 = Some("ffff:ffff:ffff:ffff::".parse().unwrap());
        assert_eq!(source_key(v6, m6), "2001:db8::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn long_cookie_values_are_cut_at_a_char_boundary() {
        let long = "é".repeat(40); // 80 bytes
        let k = cookie_key(&long);
        assert!(k.len() <= COOKIE_KEY_LEN && long.starts_with(k));
        assert_eq!(cookie_key("abc"), "abc");
    }
}
