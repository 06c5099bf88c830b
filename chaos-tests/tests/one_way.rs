//! One-way partitions between the Raft leader and the follower that owns a VIP, while two
//! writers run and an HTTP probe hits the VIP. `FULCRUM_VIP_ROUNDS` rounds each (default 3):
//!
//! | test | lost | still flowing |
//! |---|---|---|
//! | `oneway_leader_to_owner` | leader -> owner (the owner hears nothing) | owner -> leader |
//! | `oneway_owner_to_leader` | owner -> leader (the leader hears no acks) | leader -> owner |
//!
//! The cut ([`Lab::cut_one_way`]: the packets are dropped on arrival) holds `FAULT_HOLD`, then
//! heals. Asserted for every round:
//! - one MAC at a time for the VIP: its ARP claims follow a succession of owners (a node that
//!   was superseded never claims again) across the fault and the heal, and no two MACs reply
//!   to one ARP request;
//! - if the VIP moved, it answered again within the failover bound (1 s): no probe
//!   blackhole of 1 s or more from the cut to the end of the round;
//! - the cluster keeps a leader (no stretch without one a quorum agrees on longer than
//!   `MAX_LEADERLESS`);
//! - convergence after the heal: every node catches up with the leader, the API's owner alone
//!   answers ARP, and the client's ARP cache points at it;
//! - at the end, every acknowledged write is on every node.
//!
//! Printed per round: the owner before / during / after, leaders seen, the probe's longest
//! blackhole and first success after the cut, the writers' longest gap.

use std::time::{Duration, Instant};

use fulcrum_chaos_tests::failover::{
    check_succession, client_neighbour, create_vip_lb, double_answer_spans, owner_off_leader,
    timeline, wait_owner, ALL_BACKENDS,
};
use fulcrum_chaos_tests::http::{first_success_after, longest_blackhole};
use fulcrum_chaos_tests::stats::{ms, Summary};
use fulcrum_chaos_tests::{say, verify_acked, ArpWatch, Backends, HttpProbe, Lab, Writers};

const ARP_ROUND: Duration = Duration::from_millis(50);
const PROBE_INTERVAL: Duration = Duration::from_millis(25);
const PROBE_TIMEOUT: Duration = Duration::from_millis(900);
/// How long each one-way cut holds.
const FAULT_HOLD: Duration = Duration::from_secs(3);
/// The failover bound.
const FAILOVER_BOUND: Duration = Duration::from_secs(1);
/// The longest stretch the client may see no agreed leader.
const MAX_LEADERLESS: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    LeaderToOwner,
    OwnerToLeader,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_leader_to_owner() {
    run("oneway_leader_to_owner", Direction::LeaderToOwner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_owner_to_leader() {
    run("oneway_owner_to_leader", Direction::OwnerToLeader).await;
}

fn rounds() -> usize {
    std::env::var("FULCRUM_VIP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

async fn run(test: &str, dir: Direction) {
    let Some(mut lab) = Lab::start_or_skip(test).await else {
        return;
    };
    let backends = Backends::start(lab.client(), lab.client_ip(), &ALL_BACKENDS)
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    let watch = ArpWatch::start(&lab, ARP_ROUND).unwrap_or_else(|e| lab.fail(&e));
    let lb = create_vip_lb(&lab, "oneway-lb", &backends)
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    watch.watch(lb.vip);
    let writers = Writers::start(&lab, 2);
    writers
        .wait_for_more(5, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    let mut violations = Vec::new();
    let mut takeovers = Vec::new();
    let mut blackholes = Vec::new();
    let mut moved_outages = Vec::new();

    for round in 1..=rounds() {
        lab.wait_for_catch_up(Duration::from_secs(30)).await;
        let (leader, _) = lab.wait_for_leader().await;
        let owner = owner_off_leader(&lab, &lb.id, leader).await;
        watch
            .wait_sole_claimer(
                lb.vip,
                owner,
                Duration::from_millis(300),
                Duration::from_secs(15),
            )
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
                lab.fail(&format!(
                    "round {round}: the VIP does not answer before the cut"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The leader may have changed while the VIP moved.
        let (leader, term) = lab.wait_for_leader().await;
        if leader == owner {
            lab.fail(&format!(
                "round {round}: the owner {owner} became the leader"
            ));
        }
        let (from, to) = match dir {
            Direction::LeaderToOwner => (leader, owner),
            Direction::OwnerToLeader => (owner, leader),
        };
        let claims_from = Instant::now();

        let t_fault = Instant::now();
        lab.cut_one_way(from, to);
        let leaders = lab.watch_leader_for(FAULT_HOLD).await;
        let owner_during = wait_owner(&lab, &lb.id, Duration::from_secs(20), |_| true)
            .await
            .unwrap_or_else(|e| lab.fail(&e));
        let t_heal = Instant::now();
        lab.heal_all();

        // Convergence.
        lab.wait_for_catch_up(Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let final_owner = wait_owner(&lab, &lb.id, Duration::from_secs(20), |_| true)
            .await
            .unwrap_or_else(|e| lab.fail(&e));
        if let Err(e) = watch
            .wait_sole_claimer(
                lb.vip,
                final_owner,
                Duration::from_millis(300),
                Duration::from_secs(15),
            )
            .await
        {
            violations.push(format!("round {round}: after the heal: {e}"));
        }
        let t_end = Instant::now();
        let attempts = probe.finish().await;
        let (new_leader, new_term) = lab.wait_for_leader().await;

        let moved = owner_during != owner || final_owner != owner;
        let old_mac = watch.mac_of(owner);
        let takeover = watch
            .claims(lb.vip, t_fault, t_end)
            .iter()
            .find(|c| c.mac != old_mac)
            .map(|c| c.at - t_fault);
        if let Some(t) = takeover {
            takeovers.push(t);
        }
        let worst = longest_blackhole(&attempts, t_fault, t_end);
        let first_ok = first_success_after(&attempts, t_fault);
        blackholes.push(worst);
        if moved {
            moved_outages.push(worst);
        }
        say(&format!(
            "{test}: round {round}: cut node {from} -> node {to} (leader {leader} term {term}, VIP owner {owner}) for {}: owner during {owner_during}, settled {final_owner}; leaders seen: {} (longest without {}), after heal node {new_leader} term {new_term}; ARP takeover {}; probe longest blackhole {}, first success after the cut {}; writes acked so far {}",
            ms(FAULT_HOLD),
            leaders.describe(),
            ms(leaders.longest_leaderless),
            takeover.map(ms).unwrap_or_else(|| "-".into()),
            ms(worst),
            first_ok.map(ms).unwrap_or_else(|| "-".into()),
            writers.acked()
        ));

        // One MAC at a time, across the cut and the heal.
        let claims = watch.claims(lb.vip, claims_from, t_end);
        let problems = check_succession(&claims, t_fault, |m| watch.who(m));
        let doubles = double_answer_spans(&claims, &watch.rounds(lb.vip));
        if !problems.is_empty() || !doubles.is_empty() {
            let mut lines = problems;
            for (a, b, macs) in doubles {
                let who: Vec<String> = macs.iter().map(|m| watch.who(m)).collect();
                lines.push(format!(
                    "two MACs answered one ARP request from {} ms to {} ms: {who:?}",
                    a.saturating_duration_since(t_fault).as_millis(),
                    b.saturating_duration_since(t_fault).as_millis()
                ));
            }
            violations.push(format!(
                "round {round}: VIP {} (cut at +0 ms, healed at +{} ms):\n  {}\n  claims:\n{}",
                lb.vip,
                (t_heal - t_fault).as_millis(),
                lines.join("\n  "),
                timeline(&claims, t_fault, |m| watch.who(m))
            ));
        }
        if moved && worst >= FAILOVER_BOUND {
            violations.push(format!(
                "round {round}: the VIP moved (node {owner} -> {owner_during} -> {final_owner}) and was blackholed for {} (bound {})",
                ms(worst),
                ms(FAILOVER_BOUND)
            ));
        }
        if leaders.longest_leaderless > MAX_LEADERLESS {
            violations.push(format!(
                "round {round}: no agreed leader for {} during the cut (bound {})",
                ms(leaders.longest_leaderless),
                ms(MAX_LEADERLESS)
            ));
        }
        if let Some((mac, state)) = client_neighbour(&lab, lb.vip) {
            if mac != watch.mac_of(final_owner) {
                violations.push(format!(
                    "round {round}: after the heal the client's ARP cache sends the VIP to {} ({state}), not to the owner node {final_owner}",
                    watch.who(&mac)
                ));
            }
        }
    }

    let report = writers.finish().await;
    say(&format!("{test}: writers: {}", report.line()));
    let summary = |v: &[Duration]| match Summary::of(v) {
        Some(s) => format!(
            "{} / {} / {} / {}",
            ms(s.min),
            ms(s.median),
            ms(s.p99),
            ms(s.max)
        ),
        None => "-".into(),
    };
    say(&format!(
        "{test}: {} rounds; min / median / p99 / max: probe longest blackhole {}; ARP takeover {}; rounds where the VIP moved: {} (blackhole {})",
        blackholes.len(),
        summary(&blackholes),
        summary(&takeovers),
        moved_outages.len(),
        summary(&moved_outages)
    ));
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
