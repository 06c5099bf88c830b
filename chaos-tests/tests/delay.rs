//! Link delay (NFQUEUE delayer, no netem) under a running cluster.
//!
//! - `delay_shows_in_rtt`: the delayer itself. A node's link delay of 100 ms shows up in the
//!   TCP handshake time to it (IPv4 and IPv6) and goes away with `undelay`; a pair delay of
//!   50 ms shows up twice in a round trip between the pair and not at all between the client
//!   and the node; with jitter the median stays at the delay.
//! - `delay_follower_owner`, `delay_leader`: while two writers run and an HTTP probe hits a
//!   load balancer's VIP, the links of the follower that owns the VIP (of the leader) are
//!   delayed by 2x the Raft heartbeat (100 ms) for `DELAY_HOLD`. Asserted: the cluster keeps a
//!   leader (no stretch without one longer than `MAX_LEADERLESS`), every acknowledged write
//!   survives, only the API's owner answers ARP afterwards, the delay was in force
//!   (handshake time to the node), the VIP is answered by one MAC at a time (claims follow
//!   `old* new*` across the delay and its removal; no two MACs reply to one ARP request), and
//!   writes keep being acknowledged during the delay (no gap over `MAX_WRITE_GAP`). Printed: leader terms seen, VIP moves, the probe's
//!   blackholes (outage numbers if the VIP moved), the writers' longest gap.

use std::time::{Duration, Instant};

use fulcrum_chaos_tests::delay::connect_rtts;
use fulcrum_chaos_tests::failover::{
    check_handover, client_neighbour, create_vip_lb, double_answer_spans, owner_off_leader,
    timeline, wait_owner, ALL_BACKENDS,
};
use fulcrum_chaos_tests::http::{first_success_after, longest_blackhole};
use fulcrum_chaos_tests::lab::PEER_PORT;
use fulcrum_chaos_tests::netns::NetnsRuntime;
use fulcrum_chaos_tests::stats::{ms, Summary};
use fulcrum_chaos_tests::workload::longest_ack_gap;
use fulcrum_chaos_tests::{
    say, verify_acked, ArpWatch, Backends, HttpProbe, Lab, LabConfig, NodeId, Writers,
};

/// 2x the nodes' Raft heartbeat (50 ms).
const DELAY: Duration = Duration::from_millis(100);
/// How long each delay stays in force.
const DELAY_HOLD: Duration = Duration::from_secs(6);
/// The longest stretch the client may see no agreed leader (election timeout is 300-500 ms).
const MAX_LEADERLESS: Duration = Duration::from_secs(2);
const ARP_ROUND: Duration = Duration::from_millis(50);
const PROBE_INTERVAL: Duration = Duration::from_millis(25);
const PROBE_TIMEOUT: Duration = Duration::from_millis(900);
/// The longest stretch without an acknowledged write during the delay.
const MAX_WRITE_GAP: Duration = Duration::from_secs(2);

fn median(samples: &[Duration]) -> Duration {
    Summary::of(samples).map(|s| s.median).unwrap_or_default()
}

fn describe(samples: &[Duration]) -> String {
    match Summary::of(samples) {
        Some(s) => format!(
            "n={} min {} median {} p99 {} max {}",
            s.n,
            ms(s.min),
            ms(s.median),
            ms(s.p99),
            ms(s.max)
        ),
        None => "no samples".into(),
    }
}

/// Checks that `with` exceeds `base` by `want` (at least 90 % of it, at most 60 ms more).
fn check_added(lab: &Lab, what: &str, base: &[Duration], with: &[Duration], want: Duration) {
    let added = median(with).saturating_sub(median(base));
    say(&format!(
        "delay_shows_in_rtt: {what}: base {} | with delay {} | added {} (want {})",
        describe(base),
        describe(with),
        ms(added),
        ms(want)
    ));
    if with.len() < base.len() / 2
        || added < want * 9 / 10
        || added > want + Duration::from_millis(60)
    {
        lab.fail(&format!(
            "{what}: the handshake took {} more with the delay, expected about {}",
            ms(added),
            ms(want)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_shows_in_rtt() {
    let cfg = LabConfig {
        ipv6: true,
        ..LabConfig::default()
    };
    let Some(mut lab) = Lab::start_with_or_skip("delay_shows_in_rtt", cfg).await else {
        return;
    };
    const N: usize = 25;
    let client = lab.client().clone();
    let admin1 = lab.admin_addr(1);
    // An IPv6 listener inside node 1's namespace (the node's own ports are IPv4).
    let n1 = NetnsRuntime::start(lab.node_netns(1)).expect("runtime in node 1's namespace");
    let n2 = NetnsRuntime::start(lab.node_netns(2)).expect("runtime in node 2's namespace");
    let ip6 = lab.node_ip6(1);
    let listener = n1
        .run(async move { tokio::net::TcpListener::bind((ip6, 0)).await })
        .await
        .expect("IPv6 listener in node 1");
    let v6 = listener.local_addr().expect("listener address");
    let accept = n1.spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let peer2 = std::net::SocketAddr::new(lab.node_ip(2).into(), PEER_PORT);
    let admin3 = lab.admin_addr(3);

    let base4 = connect_rtts(&client, admin1, N).await;
    let base6 = connect_rtts(&client, v6, N).await;
    let base12 = connect_rtts(&n1, peer2, N).await;
    let base21 = connect_rtts(&n2, admin1, N).await;

    lab.delay(1, DELAY);
    let with4 = connect_rtts(&client, admin1, N).await;
    let with6 = connect_rtts(&client, v6, N).await;
    let from2 = connect_rtts(&n2, admin1, N).await;
    let stats = lab.undelay(1);
    say(&format!(
        "delay_shows_in_rtt: node 1 link delay {}: {} packets held, longest hold {}, {} errors",
        ms(DELAY),
        stats.packets,
        ms(stats.max_hold),
        stats.errors
    ));
    check_added(&lab, "client -> node 1 (IPv4)", &base4, &with4, DELAY);
    check_added(&lab, "client -> node 1 (IPv6)", &base6, &with6, DELAY);
    check_added(&lab, "node 2 -> node 1", &base21, &from2, DELAY);
    if stats.errors > 0 {
        lab.fail(&format!("the delayer saw errors: {stats:?}"));
    }

    let after = connect_rtts(&client, admin1, N).await;
    check_added(
        &lab,
        "client -> node 1 after undelay",
        &base4,
        &after,
        Duration::ZERO,
    );

    // A pair delay: both directions between nodes 1 and 2, nothing else.
    let half = DELAY / 2;
    lab.delay_between(1, 2, half);
    let pair = connect_rtts(&n1, peer2, N).await;
    let client1 = connect_rtts(&client, admin1, N).await;
    let client3 = connect_rtts(&client, admin3, N).await;
    let n1_packets = lab.delayed_packets(1);
    lab.undelay_all();
    check_added(
        &lab,
        "node 1 -> node 2 (pair delay, each way)",
        &base12,
        &pair,
        half * 2,
    );
    check_added(
        &lab,
        "client -> node 1 during the pair delay",
        &base4,
        &client1,
        Duration::ZERO,
    );
    let base3 = connect_rtts(&client, admin3, N).await;
    check_added(
        &lab,
        "client -> node 3 during the pair delay",
        &base3,
        &client3,
        Duration::ZERO,
    );
    if n1_packets == 0 {
        lab.fail("the pair delay held no packet in node 1");
    }

    // Jitter: the median stays at the delay, the spread shows.
    lab.delay_jitter(1, DELAY, Duration::from_millis(20));
    let jit = connect_rtts(&client, admin1, N).await;
    lab.undelay(1);
    check_added(
        &lab,
        "client -> node 1 with ±20 ms jitter",
        &base4,
        &jit,
        DELAY,
    );

    accept.abort();
    lab.wait_for_leader().await;
    lab.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_follower_owner() {
    run_delay("delay_follower_owner", Target::FollowerOwner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_leader() {
    run_delay("delay_leader", Target::Leader).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The follower that owns the VIP.
    FollowerOwner,
    /// The Raft leader (whatever it owns).
    Leader,
}

async fn run_delay(test: &str, target: Target) {
    let Some(mut lab) = Lab::start_or_skip(test).await else {
        return;
    };
    let backends = Backends::start(lab.client(), lab.client_ip(), &ALL_BACKENDS)
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    let watch = ArpWatch::start(&lab, ARP_ROUND).unwrap_or_else(|e| lab.fail(&e));
    let lb = create_vip_lb(&lab, "delay-lb", &backends)
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    watch.watch(lb.vip);
    let (leader, term) = lab.wait_for_leader().await;
    let owner = match target {
        Target::FollowerOwner => owner_off_leader(&lab, &lb.id, leader).await,
        Target::Leader => wait_owner(&lab, &lb.id, Duration::from_secs(20), |_| true)
            .await
            .unwrap_or_else(|e| lab.fail(&e)),
    };
    watch
        .wait_sole_claimer(
            lb.vip,
            owner,
            Duration::from_millis(300),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    let victim: NodeId = match target {
        Target::FollowerOwner => owner,
        Target::Leader => leader,
    };
    say(&format!(
        "{test}: leader {leader} (term {term}), VIP {} owned by node {owner}; delaying node {victim}'s link by {} for {}",
        lb.vip,
        ms(DELAY),
        ms(DELAY_HOLD)
    ));

    let writers = Writers::start(&lab, 2);
    writers
        .wait_for_more(5, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    let probe = HttpProbe::start(
        lab.client(),
        lb.tcp(),
        "probe.example.com",
        PROBE_INTERVAL,
        PROBE_TIMEOUT,
    );
    let t_probe = Instant::now();
    while !probe.last_ok(10, t_probe) {
        if t_probe.elapsed() > Duration::from_secs(15) {
            lab.fail("the VIP does not answer before the delay");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let base = connect_rtts(lab.client(), lab.admin_addr(victim), 10).await;

    // The delay, with the leader polled throughout.
    let t_fault = Instant::now();
    lab.delay(victim, DELAY);
    let mut terms: Vec<(u64, NodeId)> = vec![(term, leader)];
    let mut leaderless_since: Option<Instant> = None;
    let mut longest_leaderless = Duration::ZERO;
    let mut rtt_during = Vec::new();
    while t_fault.elapsed() < DELAY_HOLD {
        lab.check_no_crash();
        match lab.leader().await {
            Some((l, t)) => {
                if terms.last() != Some(&(t, l)) {
                    terms.push((t, l));
                }
                if let Some(since) = leaderless_since.take() {
                    longest_leaderless = longest_leaderless.max(since.elapsed());
                }
            }
            None => {
                let since = *leaderless_since.get_or_insert_with(Instant::now);
                longest_leaderless = longest_leaderless.max(since.elapsed());
            }
        }
        if rtt_during.len() < 10 {
            rtt_during.extend(connect_rtts(lab.client(), lab.admin_addr(victim), 1).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = lab.delayed_packets(victim);
    let t_heal = Instant::now();
    let stats = lab.undelay(victim);
    let owner_after_delay = wait_owner(&lab, &lb.id, Duration::from_secs(20), |_| true)
        .await
        .unwrap_or_else(|e| lab.fail(&e));

    // Settle, then the VIP must be answered by its API owner alone.
    lab.wait_for_catch_up(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let final_owner = wait_owner(&lab, &lb.id, Duration::from_secs(20), |_| true)
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    watch
        .wait_sole_claimer(
            lb.vip,
            final_owner,
            Duration::from_millis(300),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    let t_end = Instant::now();
    let attempts = probe.finish().await;
    let report = writers.finish().await;

    // Report.
    let added = median(&rtt_during).saturating_sub(median(&base));
    say(&format!(
        "{test}: node {victim} delayed {}: handshake to it {} -> {} (added {}); {held} packets held (longest {}, {} errors)",
        ms(DELAY),
        describe(&base),
        describe(&rtt_during),
        ms(added),
        ms(stats.max_hold),
        stats.errors
    ));
    let terms_text: Vec<String> = terms
        .iter()
        .map(|(t, l)| format!("term {t}: node {l}"))
        .collect();
    say(&format!(
        "{test}: leaders seen during the delay: {} ; longest stretch without an agreed leader {}",
        terms_text.join(", "),
        ms(longest_leaderless)
    ));
    let moved = owner_after_delay != owner || final_owner != owner;
    let worst = longest_blackhole(&attempts, t_fault, t_end);
    say(&format!(
        "{test}: VIP owner node {owner} -> node {owner_after_delay} (after undelay) -> node {final_owner} (settled); probe: longest blackhole {} during/after the delay{}",
        ms(worst),
        if moved {
            format!(
                ", first success after the delay began {}",
                first_success_after(&attempts, t_fault)
                    .map(ms)
                    .unwrap_or_else(|| "-".into())
            )
        } else {
            String::new()
        }
    ));
    say(&format!("{test}: writers: {}", report.line()));
    if let Some((mac, state)) = client_neighbour(&lab, lb.vip) {
        say(&format!(
            "{test}: client ARP cache for the VIP: {} {state}",
            watch.who(&mac)
        ));
    }

    // Safety: one MAC at a time for the VIP.
    let mut split = Vec::new();
    let claims = watch.claims(lb.vip, t_probe, t_end);
    let (old_mac, new_mac) = (watch.mac_of(owner), watch.mac_of(final_owner));
    let problems = check_handover(&claims, t_fault, &old_mac, &new_mac, |m| watch.who(m));
    if !problems.is_empty() {
        split.push(format!(
            "VIP {} claims across the delay (owner {owner} -> {final_owner}, delay at +0 ms, removed at +{} ms):\n  {}\n  claims:\n{}",
            lb.vip,
            (t_heal - t_fault).as_millis(),
            problems.join("\n  "),
            timeline(&claims, t_fault, |m| watch.who(m))
        ));
    }
    for (from, to, macs) in double_answer_spans(&claims, &watch.rounds(lb.vip)) {
        let who: Vec<String> = macs.iter().map(|m| watch.who(m)).collect();
        split.push(format!(
            "two MACs answered ARP requests for {} from +{} ms to +{} ms: {who:?}",
            lb.vip,
            from.saturating_duration_since(t_fault).as_millis(),
            to.saturating_duration_since(t_fault).as_millis()
        ));
    }
    let write_gap = longest_ack_gap(&report.acks, t_fault, t_heal);
    say(&format!(
        "{test}: writes acknowledged during the delay: {}; longest gap without one {}",
        report
            .acks
            .iter()
            .filter(|a| a.acked >= t_fault && a.acked < t_heal)
            .count(),
        ms(write_gap)
    ));
    let stall = if write_gap > MAX_WRITE_GAP {
        vec![format!(
            "no write acknowledged for {} during the {} delay of node {victim} (bound {})",
            ms(write_gap),
            ms(DELAY_HOLD),
            ms(MAX_WRITE_GAP)
        )]
    } else {
        Vec::new()
    };
    let mut violations = split;
    violations.extend(stall);
    if longest_leaderless > MAX_LEADERLESS {
        violations.push(format!(
            "no agreed leader for {} during the delay (bound {})",
            ms(longest_leaderless),
            ms(MAX_LEADERLESS)
        ));
    }
    if lab.leader().await.is_none() {
        violations.push("no leader after the delay".into());
    }
    if held == 0 || added < DELAY * 9 / 10 {
        violations.push(format!(
            "the delay was not in force: {held} packets held, handshake {} longer",
            ms(added)
        ));
    }
    if !violations.is_empty() {
        lab.fail(&format!(
            "{test}: {} violation(s):\n{}",
            violations.len(),
            violations.join("\n")
        ));
    }
    verify_acked(&lab, &report.acks, Duration::from_secs(30)).await;
    lab.assert_no_panics();
}
