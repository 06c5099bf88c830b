//! nf_tables rules over netlink, from the calling thread's network namespace: just enough to
//! send a node's packets to an NFQUEUE (see [`crate::delay`]), with no `nft` or `iptables`
//! binary on the machine.
//!
//! This kernel has `NFT_COMPAT` and the xtables `NFQUEUE` target but not nf_tables' own
//! `queue` expression (`CONFIG_NFT_QUEUE` is off), so a rule reads
//! `meta oifname "eth0" [ip daddr X] target NFQUEUE(num, bypass)`: the compat `target`
//! expression runs the xtables target, as `iptables-nft -j NFQUEUE` would.
//!
//! Rules are added to a base chain that stays (created on first use) and removed by handle:
//! unregistering a hook (deleting a base chain or its table) makes the kernel drop every
//! packet still queued in the namespace, on every queue, so a delayer must never do that
//! while it, or another delayer there, holds packets.
//!
//! Messages are built by hand (netlink header, `nfgenmsg`, attributes) and sent in one
//! batch on a `NETLINK_NETFILTER` socket; no `unsafe` (nix wraps the socket calls).

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    bind, recv, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_ECHO: u16 = 0x8;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFTA_TARGET_NAME: u16 = 1;
const NFTA_TARGET_REV: u16 = 2;
const NFTA_TARGET_INFO: u16 = 3;
/// `NFT_REG_1`: the first 16-byte data register.
const NFT_REG_1: u32 = 1;
const NF_ACCEPT: u32 = 1;
/// `NFQ_FLAG_BYPASS`: with no listener bound to the queue, packets pass instead of dropping.
const NFQ_FLAG_BYPASS: u16 = 0x01;

/// Address family of a table (`NFPROTO_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `ip`
    Ipv4,
    /// `ip6`
    Ipv6,
}

impl Family {
    fn proto(self) -> u8 {
        match self {
            Family::Ipv4 => 2,
            Family::Ipv6 => 10,
        }
    }
}

/// Netfilter hook of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Packets arriving for this host (`input`).
    Input,
    /// Packets this host sends (`output`).
    Output,
}

impl Hook {
    fn num(self) -> u32 {
        match self {
            Hook::Input => 1,
            Hook::Output => 3,
        }
    }
}

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// The packet leaves through this interface.
    OutIface(String),
    /// The packet arrived on this interface.
    InIface(String),
    /// The packet's destination address (of the table's family).
    Daddr(IpAddr),
    /// The packet's source address (of the table's family).
    Saddr(IpAddr),
}

/// A rule in base chain `chain` (on `hook`) of table `table` of `family`: packets that
/// match every condition go to NFQUEUE `queue` (or pass when nobody listens on it). Table
/// and chain are created if missing and left in place when the rule goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRule {
    /// Table name.
    pub table: String,
    /// Base chain name.
    pub chain: String,
    /// Its family.
    pub family: Family,
    /// Where the chain hooks in.
    pub hook: Hook,
    /// Conditions (all must hold).
    pub matches: Vec<Match>,
    /// The queue number.
    pub queue: u16,
}

/// Builds netlink messages into one buffer.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
    messages: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            buf: Vec::new(),
            seq: 1,
            messages: 0,
        }
    }

    /// Starts a message; returns the offset of its header for [`Batch::end`].
    fn begin(&mut self, kind: u16, flags: u16, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by end()
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        self.seq += 1;
        // nfgenmsg: family, version 0, resource id (big endian).
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    fn end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
        self.messages += 1;
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn str(&mut self, kind: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    fn be32(&mut self, kind: u16, v: u32) {
        self.attr(kind, &v.to_be_bytes());
    }

    /// Opens a nested attribute; returns its offset for [`Batch::close`].
    fn open(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn close(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn batch_marker(&mut self, kind: u16) {
        let m = self.begin(kind, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        self.end(m);
    }

    fn nft(&mut self, msg: u16, flags: u16, family: Family) -> usize {
        self.begin(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family.proto(),
            0,
        )
    }

    /// One expression: `name` with its data attributes written by `data`.
    fn expr(&mut self, name: &str, data: impl FnOnce(&mut Batch)) {
        let elem = self.open(NFTA_LIST_ELEM);
        self.str(NFTA_EXPR_NAME, name);
        let d = self.open(NFTA_EXPR_DATA);
        data(self);
        self.close(d);
        self.close(elem);
    }

    /// `cmp eq <value>` on register 1.
    fn cmp_eq(&mut self, value: &[u8]) {
        self.expr("cmp", |b| {
            b.be32(NFTA_CMP_SREG, NFT_REG_1);
            b.be32(NFTA_CMP_OP, NFT_CMP_EQ);
            let data = b.open(NFTA_CMP_DATA);
            b.attr(NFTA_DATA_VALUE, value);
            b.close(data);
        });
    }

    fn meta_ifname(&mut self, key: u32, name: &str) {
        self.expr("meta", |b| {
            b.be32(NFTA_META_DREG, NFT_REG_1);
            b.be32(NFTA_META_KEY, key);
        });
        // Interface names compare as IFNAMSIZ bytes, NUL padded.
        let mut v = [0u8; 16];
        v[..name.len()].copy_from_slice(name.as_bytes());
        self.cmp_eq(&v);
    }

    fn payload_addr(&mut self, family: Family, addr: IpAddr, source: bool) {
        let (offset, bytes): (u32, Vec<u8>) = match (family, addr) {
            (Family::Ipv4, IpAddr::V4(a)) => (if source { 12 } else { 16 }, a.octets().to_vec()),
            (Family::Ipv6, IpAddr::V6(a)) => (if source { 8 } else { 24 }, a.octets().to_vec()),
            _ => unreachable!("address family checked by the caller"),
        };
        let len = bytes.len() as u32;
        self.expr("payload", |b| {
            b.be32(NFTA_PAYLOAD_DREG, NFT_REG_1);
            b.be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
            b.be32(NFTA_PAYLOAD_OFFSET, offset);
            b.be32(NFTA_PAYLOAD_LEN, len);
        });
        self.cmp_eq(&bytes);
    }
}

fn check_rule(rule: &QueueRule) -> Result<(), String> {
    for m in &rule.matches {
        match m {
            Match::OutIface(n) | Match::InIface(n) if n.is_empty() || n.len() > 15 => {
                return Err(format!("bad interface name {n:?}"))
            }
            Match::Daddr(a) | Match::Saddr(a) if a.is_ipv4() != (rule.family == Family::Ipv4) => {
                return Err(format!(
                    "address {a} does not belong in a {:?} table",
                    rule.family
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The netlink batch that creates `rule`'s table and chain if missing, and the rule (echoed
/// back, for its handle).
fn queue_rule_batch(rule: &QueueRule) -> Batch {
    let mut b = Batch::new();
    b.batch_marker(NFNL_MSG_BATCH_BEGIN);

    let m = b.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, rule.family);
    b.str(NFTA_TABLE_NAME, &rule.table);
    b.end(m);

    let m = b.nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, rule.family);
    b.str(NFTA_CHAIN_TABLE, &rule.table);
    b.str(NFTA_CHAIN_NAME, &rule.chain);
    let hook = b.open(NFTA_CHAIN_HOOK);
    b.be32(NFTA_HOOK_HOOKNUM, rule.hook.num());
    b.be32(NFTA_HOOK_PRIORITY, 0);
    b.close(hook);
    b.be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
    b.str(NFTA_CHAIN_TYPE, "filter");
    b.end(m);

    let m = b.nft(
        NFT_MSG_NEWRULE,
        NLM_F_CREATE | NLM_F_APPEND | NLM_F_ECHO,
        rule.family,
    );
    b.str(NFTA_RULE_TABLE, &rule.table);
    b.str(NFTA_RULE_CHAIN, &rule.chain);
    let exprs = b.open(NFTA_RULE_EXPRESSIONS);
    for cond in &rule.matches {
        match cond {
            Match::OutIface(n) => b.meta_ifname(NFT_META_OIFNAME, n),
            Match::InIface(n) => b.meta_ifname(NFT_META_IIFNAME, n),
            Match::Daddr(a) => b.payload_addr(rule.family, *a, false),
            Match::Saddr(a) => b.payload_addr(rule.family, *a, true),
        }
    }
    // xt_NFQ_info_v3 { queuenum, queues_total, flags } in host order, XT_ALIGNed to 8.
    let mut info = Vec::with_capacity(8);
    info.extend_from_slice(&rule.queue.to_ne_bytes());
    info.extend_from_slice(&1u16.to_ne_bytes());
    info.extend_from_slice(&NFQ_FLAG_BYPASS.to_ne_bytes());
    info.extend_from_slice(&[0, 0]);
    b.expr("target", |b| {
        b.str(NFTA_TARGET_NAME, "NFQUEUE");
        b.be32(NFTA_TARGET_REV, 3);
        b.attr(NFTA_TARGET_INFO, &info);
    });
    b.close(exprs);
    b.end(m);

    b.batch_marker(NFNL_MSG_BATCH_END);
    b
}

/// Creates `rule` in the calling thread's network namespace; returns its handle.
pub fn add_queue_rule(rule: &QueueRule) -> Result<u64, String> {
    check_rule(rule)?;
    let b = queue_rule_batch(rule);
    transact(&b)
        .and_then(|h| h.ok_or_else(|| "the kernel echoed no rule handle".to_string()))
        .map_err(|e| format!("nftables: add rule {rule:?}: {e}"))
}

/// Deletes rule `handle` of `rule`'s chain (the chain and table stay).
pub fn delete_rule(rule: &QueueRule, handle: u64) -> Result<(), String> {
    let mut b = Batch::new();
    b.batch_marker(NFNL_MSG_BATCH_BEGIN);
    let m = b.nft(NFT_MSG_DELRULE, 0, rule.family);
    b.str(NFTA_RULE_TABLE, &rule.table);
    b.str(NFTA_RULE_CHAIN, &rule.chain);
    b.attr(NFTA_RULE_HANDLE, &handle.to_be_bytes());
    b.end(m);
    b.batch_marker(NFNL_MSG_BATCH_END);
    transact(&b)
        .map(|_| ())
        .map_err(|e| format!("nftables: delete rule {handle} of {rule:?}: {e}"))
}

/// Deletes table `name` of `family` (and everything in it) in the calling thread's network
/// namespace.
pub fn delete_table(family: Family, name: &str) -> Result<(), String> {
    let mut b = Batch::new();
    b.batch_marker(NFNL_MSG_BATCH_BEGIN);
    let m = b.nft(NFT_MSG_DELTABLE, 0, family);
    b.str(NFTA_TABLE_NAME, name);
    b.end(m);
    b.batch_marker(NFNL_MSG_BATCH_END);
    transact(&b)
        .map(|_| ())
        .map_err(|e| format!("nftables: delete table {name}: {e}"))
}

/// Sends a batch and waits for an acknowledgement of each of its nf_tables messages (the
/// batch markers get none); the first error wins. Returns the handle of a rule the kernel
/// echoed (the echo comes with the commit, before the acknowledgements).
fn transact(b: &Batch) -> Result<Option<u64>, String> {
    let fd = open_socket()?;
    send(fd.as_raw_fd(), &b.buf, MsgFlags::empty()).map_err(|e| format!("send: {e}"))?;
    let mut expected = b.messages - 2;
    let mut handle = None;
    let mut buf = vec![0u8; 65536];
    while expected > 0 {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| format!("recv ({expected} answer(s) missing): {e}"))?;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
            let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes"));
            if len < 16 || off + len > n {
                return Err(format!("truncated netlink answer ({len} bytes at {off})"));
            }
            if kind == NLMSG_ERROR && len >= 20 {
                let errno = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().expect("4"));
                if errno != 0 {
                    return Err(std::io::Error::from_raw_os_error(-errno).to_string());
                }
                expected -= 1;
            } else if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE {
                handle = handle.or(rule_handle(&buf[off + 20..off + len]));
            }
            off += len.next_multiple_of(4);
        }
    }
    Ok(handle)
}

/// `NFTA_RULE_HANDLE` among a rule message's attributes.
fn rule_handle(mut attrs: &[u8]) -> Option<u64> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & !NLA_F_NESTED;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NFTA_RULE_HANDLE && len == 12 {
            return Some(u64::from_be_bytes(attrs[4..12].try_into().ok()?));
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

fn open_socket() -> Result<OwnedFd, String> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(|e| format!("netfilter netlink socket: {e}"))?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(|e| format!("bind: {e}"))?;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::from(libc_timeval(Duration::from_secs(2))),
    )
    .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    Ok(fd)
}

fn libc_timeval(d: Duration) -> nix::libc::timeval {
    nix::libc::timeval {
        tv_sec: d.as_secs() as _,
        tv_usec: d.subsec_micros() as _,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_layout() {
        let rule = QueueRule {
            table: "t".into(),
            chain: "c".into(),
            family: Family::Ipv4,
            hook: Hook::Output,
            matches: vec![
                Match::OutIface("eth0".into()),
                Match::Daddr("10.0.0.1".parse().unwrap()),
            ],
            queue: 7,
        };
        check_rule(&rule).unwrap();
        let b = queue_rule_batch(&rule);
        assert_eq!(b.messages, 5);
        // Every message's length adds up to the buffer, each 4-aligned.
        let mut off = 0;
        let mut n = 0;
        while off < b.buf.len() {
            let len = u32::from_ne_bytes(b.buf[off..off + 4].try_into().unwrap()) as usize;
            assert!(len >= 20 && len.is_multiple_of(4), "message {n}: {len}");
            off += len;
            n += 1;
        }
        assert_eq!((off, n), (b.buf.len(), 5));
        let bad = QueueRule {
            matches: vec![Match::Daddr("::1".parse().unwrap())],
            ..rule
        };
        assert!(check_rule(&bad).is_err());
    }
}
