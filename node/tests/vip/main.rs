//! The VIP mechanism (`node/src/vip`) in real network namespaces.
//!
//! Each test builds its own lab: a bridge in a "switch" namespace and one namespace per
//! host (`a`, `b`: VIP holders; `c`: the client), each with an `eth0` on the bridge. A
//! holder is this test binary re-run as a helper process inside its namespace
//! (`ip netns exec NS <this test binary> helper_process --exact`), driven by line commands
//! on stdin, so a test can `kill -9` or SIGSTOP it. The client side uses iputils `arping`,
//! the kernel's neighbour table (`ip neigh`), TCP through a helper in `c`, and for IPv6
//! neighbour solicitations sent and answers read by that helper (`solicit`, a packet
//! socket). The lab's hosts have IPv6 addresses with DAD off.
//!
//! Needs root and network namespaces; otherwise every test prints "SKIPPED" and passes.

#[path = "../../src/vip/mod.rs"]
mod vip;

mod harness;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use harness::{Helper, Lab, MAC_A, MAC_B, MAC_C};

/// Local, not held: the kernel stays quiet (arp_ignore); held: we answer with our MAC and
/// carry TCP; released: silence again. The sysctls are set; stats count what was sent.
#[test]
fn hold_answers_arp_and_carries_tcp_release_goes_silent() {
    let Some(mut lab) = Lab::new("hold") else {
        return;
    };
    let a_ns = lab.host("a", MAC_A, 1);
    let c_ns = lab.host("c", harness::MAC_C, 100);
    let vip = lab.vip();
    let mut a = Helper::spawn(&a_ns, &[]);
    let mut c = Helper::spawn(&c_ns, &[]);

    a.ok(&format!("local {vip}@eth0"));
    assert!(lab.lo_has(&a_ns, vip), "VIP is on lo of a");
    for key in ["arp_ignore", "arp_announce"] {
        for conf in ["all", "eth0"] {
            let value = lab.sysctl(&a_ns, conf, key);
            let want = if key == "arp_ignore" { "1" } else { "2" };
            assert_eq!(value, want, "{conf}.{key} in a");
        }
    }
    assert_eq!(
        lab.arping(&c_ns, vip),
        None,
        "local but not held: nobody answers"
    );

    a.ok(&format!("listen {vip}:8080 hello-from-a"));
    a.ok(&format!("held {vip}@eth0"));
    assert!(
        lab.wait_arping(&c_ns, vip, MAC_A),
        "held: arping gets a's MAC"
    );
    assert_eq!(c.cmd(&format!("connect {vip}:8080")), "got hello-from-a");
    assert_eq!(lab.neigh(&c_ns, vip).as_deref(), Some(MAC_A));

    assert!(
        harness::wait_for(Duration::from_secs(10), || a.stats()["garp"] >= 6),
        "burst of 3, both forms"
    );
    let stats = a.stats();
    assert!(stats["replies"] >= 1, "{stats:?}");
    assert_eq!(stats["held"], 1);
    assert_eq!(stats["local"], 1);
    assert_eq!(stats["conflicts"], 0);

    a.ok("held");
    assert_eq!(lab.arping(&c_ns, vip), None, "released: nobody answers");
    // set_held is idempotent and 127.0.0.0/8 VIPs are no-ops.
    a.ok("held 127.0.10.10@eth0");
    a.ok("held 127.0.10.10@eth0");
    assert_eq!(a.stats()["held"], 0);
}

/// Moving the VIP from a to b: b's gratuitous ARP switches the client's neighbour entry
/// to b's MAC without any traffic from the client, and new connections reach b.
#[test]
fn moving_vip_switches_client_neighbour_entry() {
    let Some(mut lab) = Lab::new("move") else {
        return;
    };
    let vip = lab.vip();
    moving_vip(&mut lab, vip.into(), |lab, c_ns, _, b| {
        assert!(lab.wait_arping(c_ns, vip, MAC_B));
        assert!(b.stats()["garp"] >= 1);
    });
}

/// Two holders at once (what fencing must prevent) are at least seen: each counts the
/// other's claims and re-announces, rate-limited.
#[test]
fn conflicting_claim_is_seen_and_reannounced() {
    let Some(mut lab) = Lab::new("conflict") else {
        return;
    };
    let vip = lab.vip();
    conflicting_claim(&mut lab, vip.into(), "garp", 6);
}

/// kill -9 of the holder: the VIP stays on lo in its namespace, but nobody answers ARP
/// for it any more. SIGSTOP: silent while stopped, answering again after SIGCONT.
#[test]
fn killed_or_stopped_holder_goes_silent() {
    let Some(mut lab) = Lab::new("kill") else {
        return;
    };
    let a_ns = lab.host("a", MAC_A, 1);
    let c_ns = lab.host("c", harness::MAC_C, 100);
    let vip = lab.vip();
    let mut a = Helper::spawn(&a_ns, &[]);
    a.ok(&format!("local {vip}@eth0"));
    a.ok(&format!("held {vip}@eth0"));
    assert!(lab.wait_arping(&c_ns, vip, MAC_A));

    a.signal("STOP");
    assert_eq!(lab.arping(&c_ns, vip), None, "stopped: nobody answers");
    a.signal("CONT");
    assert!(
        lab.wait_arping(&c_ns, vip, MAC_A),
        "continued: answers again"
    );

    a.kill();
    assert!(lab.lo_has(&a_ns, vip), "the address outlives the process");
    assert_eq!(lab.arping(&c_ns, vip), None, "killed: nobody answers");
}

/// Addresses are Fulcrum's only when it added them: a new process removes the stale ones
/// a killed process left (they carry the IFA_PROTO mark), never an operator's address,
/// and a clean shutdown removes what it added.
#[test]
fn addresses_on_lo_are_managed_and_cleaned_up() {
    let Some(mut lab) = Lab::new("addrs") else {
        return;
    };
    let a_ns = lab.host("a", MAC_A, 1);
    let vip = lab.vip();
    let vip2 = lab.vip2();
    let operator = lab.operator_addr();
    harness::ip(&[
        "-n",
        &a_ns,
        "addr",
        "add",
        &format!("{operator}/32"),
        "dev",
        "lo",
    ]);

    let mut a = Helper::spawn(&a_ns, &[]);
    a.ok(&format!("local {vip}@eth0 {operator}@eth0"));
    assert!(lab.lo_has(&a_ns, vip));
    a.kill();

    let mut a2 = Helper::spawn(&a_ns, &[]);
    a2.ok(&format!("local {vip2}@eth0"));
    assert!(
        !lab.lo_has(&a_ns, vip),
        "stale VIP of the killed process removed"
    );
    assert!(lab.lo_has(&a_ns, vip2));
    assert!(lab.lo_has(&a_ns, operator), "operator's address kept");

    let err = a2.cmd(&format!("local {vip}@nosuch0"));
    assert!(
        err.starts_with("err") && err.contains("nosuch0"),
        "missing interface named: {err}"
    );
    let err = a2.cmd(&format!("held {vip}@nosuch0"));
    assert!(err.contains("nosuch0"), "{err}");

    a2.ok(&format!("local {vip2}@eth0"));
    a2.shutdown();
    assert!(!lab.lo_has(&a_ns, vip2), "shutdown removes what it added");
    assert!(lab.lo_has(&a_ns, operator), "operator's address kept");
}

/// IPv6: local, not held: neither the kernel nor the process answers a neighbour
/// solicitation (multicast or unicast) for the VIP on lo, and the client's kernel cannot
/// resolve it. Held (next to an IPv4 VIP): solicited NA with S and O and a's MAC, to both
/// kinds of NS; the client's kernel resolves it and TCP reaches a's listener; a joined
/// the solicited-node group; a burst of unsolicited NAs went out. Releasing the IPv6 VIP
/// silences it at once while the IPv4 VIP keeps being answered.
#[test]
fn ipv6_hold_answers_ns_and_carries_tcp_release_goes_silent() {
    let Some(mut lab) = Lab::new("hold6") else {
        return;
    };
    let a_ns = lab.host("a", MAC_A, 1);
    let c_ns = lab.host("c", MAC_C, 100);
    let vip = lab.vip6();
    let vip4 = lab.vip();
    let client = lab.addr6(100);
    let mut a = Helper::spawn(&a_ns, &[]);
    let mut c = Helper::spawn(&c_ns, &[]);
    let multicast_ns = format!("solicit {vip} {client}");
    let unicast_ns = format!("solicit {vip} {client} {MAC_A}");
    let answer_a = format!("na {MAC_A} S=1 O=1 R=0");

    a.ok(&format!("local {vip}@eth0 {vip4}@eth0"));
    assert!(lab.lo_has(&a_ns, vip), "IPv6 VIP is on lo of a");
    a.ok(&format!("listen [{vip}]:8080 hello6-from-a"));
    assert_eq!(c.cmd(&multicast_ns), "none", "local, not held: no NA");
    assert_eq!(
        c.cmd(&unicast_ns),
        "none",
        "local, not held: no NA to a probe"
    );
    let refused = c.cmd(&format!("connect [{vip}]:8080"));
    assert!(
        refused.starts_with("err"),
        "the client's kernel cannot resolve the VIP: {refused}"
    );
    assert_eq!(
        lab.neigh(&c_ns, vip),
        None,
        "{}",
        lab.neigh_entry(&c_ns, vip)
    );
    assert!(!lab.joined_solicited_node(&a_ns, vip));
    lab.neigh_flush(&c_ns, vip);

    a.ok(&format!("held {vip}@eth0 {vip4}@eth0"));
    assert!(
        harness::wait_for(Duration::from_secs(10), || lab
            .joined_solicited_node(&a_ns, vip)),
        "a joins the VIP's solicited-node group on eth0"
    );
    assert_eq!(c.cmd(&multicast_ns), answer_a, "held: solicited NA");
    assert_eq!(
        c.cmd(&unicast_ns),
        answer_a,
        "held: reachability probe answered"
    );
    assert_eq!(c.cmd(&format!("connect [{vip}]:8080")), "got hello6-from-a");
    assert_eq!(lab.neigh(&c_ns, vip).as_deref(), Some(MAC_A));
    assert!(lab.wait_arping(&c_ns, vip4, MAC_A), "the IPv4 VIP too");

    assert!(
        harness::wait_for(Duration::from_secs(10), || a.stats()["na"] >= 3),
        "burst of 3 unsolicited NAs"
    );
    let stats = a.stats();
    assert!(stats["answered"] >= 2, "{stats:?}");
    assert!(stats["garp"] >= 6, "{stats:?}");
    assert_eq!(stats["held"], 2);
    assert_eq!(stats["local"], 2);
    assert_eq!(stats["conflicts"], 0);
    assert_eq!(stats["send_errors"], 0);

    a.ok(&format!("held {vip4}@eth0"));
    assert_eq!(c.cmd(&multicast_ns), "none", "released: no NA");
    assert_eq!(c.cmd(&unicast_ns), "none", "released: no NA to a probe");
    assert!(!lab.joined_solicited_node(&a_ns, vip), "group left");
    assert!(lab.wait_arping(&c_ns, vip4, MAC_A), "IPv4 VIP still held");
    a.ok("held");
    assert_eq!(a.stats()["held"], 0);
}

/// IPv6: moving the VIP from a to b: b's unsolicited NA switches the client's neighbour
/// entry to b's MAC without any traffic from the client, and new connections reach b.
#[test]
fn ipv6_moving_vip_switches_client_neighbour_entry() {
    let Some(mut lab) = Lab::new("move6") else {
        return;
    };
    let vip = lab.vip6();
    let client = lab.addr6(100);
    moving_vip(&mut lab, vip.into(), |_, _, c, b| {
        assert_eq!(
            c.cmd(&format!("solicit {vip} {client}")),
            format!("na {MAC_B} S=1 O=1 R=0")
        );
        assert!(b.stats()["na"] >= 1);
    });
}

/// IPv6: two holders at once are seen: each counts the other's advertisements and
/// re-announces at once (rate-limited), not at the next refresh.
#[test]
fn ipv6_conflicting_advert_is_seen_and_reannounced() {
    let Some(mut lab) = Lab::new("conflict6") else {
        return;
    };
    let vip = lab.vip6();
    conflicting_claim(&mut lab, vip.into(), "na", 3);
}

/// IPv6: kill -9 of the holder: the VIP stays on lo, but nobody answers NS for it any
/// more and the group membership is gone. SIGSTOP: silent while stopped, answering again
/// after SIGCONT.
#[test]
fn ipv6_killed_or_stopped_holder_goes_silent() {
    let Some(mut lab) = Lab::new("kill6") else {
        return;
    };
    let a_ns = lab.host("a", MAC_A, 1);
    let c_ns = lab.host("c", MAC_C, 100);
    let vip = lab.vip6();
    let client = lab.addr6(100);
    let mut a = Helper::spawn(&a_ns, &[]);
    let mut c = Helper::spawn(&c_ns, &[]);
    let solicit = format!("solicit {vip} {client}");
    let answer_a = format!("na {MAC_A} S=1 O=1 R=0");
    a.ok(&format!("local {vip}@eth0"));
    a.ok(&format!("listen [{vip}]:8080 from-a"));
    a.ok(&format!("held {vip}@eth0"));
    assert_eq!(c.cmd(&solicit), answer_a);

    a.signal("STOP");
    assert_eq!(c.cmd(&solicit), "none", "stopped: nobody answers");
    a.signal("CONT");
    assert!(
        harness::wait_for(Duration::from_secs(10), || c.cmd(&solicit) == answer_a),
        "continued: answers again"
    );

    a.kill();
    assert!(lab.lo_has(&a_ns, vip), "the address outlives the process");
    assert_eq!(c.cmd(&solicit), "none", "killed: nobody answers");
    assert_eq!(
        c.cmd(&format!("solicit {vip} {client} {MAC_A}")),
        "none",
        "killed: a probe is not answered either"
    );
    assert!(
        !lab.joined_solicited_node(&a_ns, vip),
        "the kernel left the group with the socket"
    );
    lab.neigh_flush(&c_ns, vip);
    let refused = c.cmd(&format!("connect [{vip}]:8080"));
    assert!(
        refused.starts_with("err"),
        "the client's kernel cannot resolve the VIP: {refused}"
    );
}

/// a holds `vip` and serves, then hands it to b: the client's neighbour entry follows
/// b's announcement with no traffic from the client, and new connections reach b.
/// `then_b_answers` checks the family's own answer from b (client helper, b).
fn moving_vip(
    lab: &mut Lab,
    vip: IpAddr,
    then_b_answers: impl FnOnce(&Lab, &str, &mut Helper, &mut Helper),
) {
    let a_ns = lab.host("a", MAC_A, 1);
    let b_ns = lab.host("b", MAC_B, 2);
    let c_ns = lab.host("c", MAC_C, 100);
    let service = SocketAddr::new(vip, 8080);
    let mut a = Helper::spawn(&a_ns, &[]);
    let mut b = Helper::spawn(&b_ns, &[]);
    let mut c = Helper::spawn(&c_ns, &[]);
    for (h, name) in [(&mut a, "a"), (&mut b, "b")] {
        h.ok(&format!("local {vip}@eth0"));
        h.ok(&format!("listen {service} from-{name}"));
    }

    a.ok(&format!("held {vip}@eth0"));
    assert_eq!(c.cmd(&format!("connect {service}")), "got from-a");
    assert_eq!(lab.neigh(&c_ns, vip).as_deref(), Some(MAC_A));

    a.ok("held");
    b.ok(&format!("held {vip}@eth0"));
    assert!(
        harness::wait_for(Duration::from_secs(10), || {
            lab.neigh(&c_ns, vip).as_deref() == Some(MAC_B)
        }),
        "client's neighbour entry moves to b after b's announcement: {}",
        lab.neigh_entry(&c_ns, vip)
    );
    assert_eq!(c.cmd(&format!("connect {service}")), "got from-b");
    then_b_answers(lab, &c_ns, &mut c, &mut b);
    assert_eq!(a.stats()["conflicts"], 0);
    assert_eq!(b.stats()["conflicts"], 0);
}

/// a and b both hold `vip`: a counts b's claim and re-announces at once (its stats key
/// `announced`, `burst` of them after taking the VIP), not at the next refresh.
fn conflicting_claim(lab: &mut Lab, vip: IpAddr, announced: &str, burst: u64) {
    let a_ns = lab.host("a", MAC_A, 1);
    let b_ns = lab.host("b", MAC_B, 2);
    let mut a = Helper::spawn(&a_ns, &[]);
    let mut b = Helper::spawn(&b_ns, &[]);
    a.ok(&format!("local {vip}@eth0"));
    b.ok(&format!("local {vip}@eth0"));
    a.ok(&format!("held {vip}@eth0"));
    assert!(harness::wait_for(Duration::from_secs(10), || a.stats()
        [announced]
        >= burst));
    let before = a.stats()[announced];
    b.ok(&format!("held {vip}@eth0"));
    assert!(
        harness::wait_for(Duration::from_secs(10), || a.stats()["conflicts"] >= 1),
        "a sees b's claim"
    );
    assert!(
        harness::wait_for(Duration::from_secs(10), || a.stats()[announced] > before),
        "a re-announces at once, not at the next refresh (20 s away)"
    );
    assert_eq!(a.last_conflict_mac(), Some(MAC_B.to_owned()));
    b.ok("held");
}

/// The helper process: does nothing unless started by a test with FULCRUM_VIP_HELPER set.
#[test]
fn helper_process() {
    if std::env::var_os(harness::HELPER_ENV).is_none() {
        return;
    }
    harness::run_helper();
}
