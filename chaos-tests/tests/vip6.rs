//! IPv6 VIP failover: `vip6_kill_owner`. The lab's link has IPv6 (`fd77:0:K::/64`, no DAD)
//! and the nodes a VIP subnet `lab6`; a load balancer (the tree of the IPv4 scenarios: TCP
//! listener on 80 over `b1`/`b2`, HTTP on 8080 with a HOST_NAME rule) gets an IPv6 VIP, which
//! its owner answers neighbour solicitations for and announces with unsolicited neighbour
//! advertisements. Two writers run throughout. `FULCRUM_VIP_ROUNDS` rounds (default 10) of:
//! kill -9 the owner (a follower; the VIP is moved off the leader first), wait until the API
//! names a new owner, its NA is seen and the client's connections through the VIP succeed
//! again, check routing, start the old owner again.
//!
//! Measured from the client namespace (a new connection + HTTP request every 25 ms, each
//! allowed 900 ms): the outage (from the kill to the end of the first successful connection
//! started after it) and the NA takeover (from the kill to the new owner's first NA).
//!
//! Asserted every round: the NAs for the VIP read `old* new*` across the kill and the restart
//! (the old owner never answers an NS again once the new one has, nobody else ever does), no
//! two MACs answer one NS (the watcher namespace solicits the VIP every 50 ms), the outage is
//! under the failover bound (1 s), routing through the new owner (TCP pool `b1`/`b2`,
//! HTTP `www1`, `www2.example.com` -> `www2`), the VIP does not move back when the old owner
//! returns, the client's neighbour entry ends on the owner; at the end every acknowledged
//! write is on every node.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use fulcrum_chaos_tests::failover::{
    check_handover, check_routing_at, client_neighbour, create_vip6_lb, double_answer_spans,
    owner_off_leader, timeline, wait_owner, ALL_BACKENDS,
};
use fulcrum_chaos_tests::http::{first_success_after, longest_blackhole};
use fulcrum_chaos_tests::ndp::NdpWatch;
use fulcrum_chaos_tests::stats::{ms, Summary};
use fulcrum_chaos_tests::{say, verify_acked, Backends, HttpProbe, Lab, LabConfig, Writers};

const NS_ROUND: Duration = Duration::from_millis(50);
const PROBE_INTERVAL: Duration = Duration::from_millis(25);
const PROBE_TIMEOUT: Duration = Duration::from_millis(900);
const STEADY_PROBES: usize = 10;
/// The failover bound.
const FAILOVER_BOUND: Duration = Duration::from_secs(1);

fn rounds() -> usize {
    std::env::var("FULCRUM_VIP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(10)
}

async fn wait_for(lab: &Lab, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            lab.fail(&format!("timed out ({within:?}) waiting until {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip6_kill_owner() {
    let test = "vip6_kill_owner";
    let cfg = LabConfig {
        ipv6: true,
        ..LabConfig::default()
    };
    let Some(mut lab) = Lab::start_with_or_skip(test, cfg).await else {
        return;
    };
    let backends = Backends::start(lab.client(), lab.client_ip(), &ALL_BACKENDS)
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    let watch = NdpWatch::start(&lab, NS_ROUND).unwrap_or_else(|e| lab.fail(&e));
    let lb = create_vip6_lb(&lab, "vip6-lb", &backends)
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    watch.watch(lb.vip);
    say(&format!(
        "{test}: load balancer {} with VIP {}",
        lb.id, lb.vip
    ));
    let writers = Writers::start(&lab, 2);
    let mut violations: Vec<String> = Vec::new();
    let mut table = String::new();
    let (mut outages, mut takeovers) = (Vec::new(), Vec::new());

    for round in 1..=rounds() {
        lab.wait_for_catch_up(Duration::from_secs(30)).await;
        let (leader, _) = lab.wait_for_leader().await;
        let old = owner_off_leader(&lab, &lb.id, leader).await;
        watch
            .wait_sole_claimer(
                lb.vip,
                old,
                Duration::from_millis(300),
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|e| lab.fail(&e));
        let claims_from = Instant::now();
        let probe = HttpProbe::start(
            lab.client(),
            lb.tcp(),
            "probe.example.com",
            PROBE_INTERVAL,
            PROBE_TIMEOUT,
        );
        let t_probe = Instant::now();
        wait_for(
            &lab,
            "the IPv6 VIP answers before the kill",
            Duration::from_secs(15),
            || probe.last_ok(STEADY_PROBES, t_probe),
        )
        .await;

        // The fault.
        lab.kill(old);
        let t_fault = Instant::now();
        let new = wait_owner(&lab, &lb.id, Duration::from_secs(20), |n| n != old)
            .await
            .unwrap_or_else(|e| lab.fail(&format!("round {round}: {e}")));
        let api_move = t_fault.elapsed();
        let new_mac = watch.mac_of(new);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let claimed = watch
                .claims(lb.vip, t_fault, Instant::now())
                .iter()
                .any(|c| c.mac == new_mac);
            if claimed && probe.last_ok(STEADY_PROBES, t_fault) {
                break;
            }
            if Instant::now() > deadline {
                lab.fail(&format!(
                    "round {round}: VIP {} not answering 20 s after the kill (new owner {new}, NA seen: {claimed})\n{}",
                    lb.vip,
                    watch.timeline(lb.vip, t_fault - Duration::from_secs(1), Instant::now(), t_fault)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t_recovered = Instant::now();
        let takeover = watch
            .claims(lb.vip, t_fault, t_recovered)
            .iter()
            .find(|c| c.mac == new_mac)
            .map(|c| c.at - t_fault);
        if let Err(e) = check_routing_at(&lab, lb.tcp(), lb.http()).await {
            violations.push(format!("round {round}: routing through node {new}: {e}"));
        }

        // The old owner comes back; it must stay silent for the VIP.
        lab.start(old);
        lab.wait_for_catch_up(Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let t_settled = Instant::now();
        wait_for(
            &lab,
            "the IPv6 VIP answers after the restart",
            Duration::from_secs(15),
            || probe.last_ok(STEADY_PROBES, t_settled),
        )
        .await;
        let final_owner = wait_owner(&lab, &lb.id, Duration::from_secs(20), |_| true)
            .await
            .unwrap_or_else(|e| lab.fail(&e));
        if final_owner != new {
            violations.push(format!(
                "round {round}: the VIP moved again after it answered: node {new} -> node {final_owner}"
            ));
        }
        if let Err(e) = watch
            .wait_sole_claimer(
                lb.vip,
                final_owner,
                Duration::from_millis(300),
                Duration::from_secs(15),
            )
            .await
        {
            violations.push(format!("round {round}: after the restart: {e}"));
        }
        let t_end = Instant::now();
        let attempts = probe.finish().await;
        let outage = first_success_after(&attempts, t_fault).unwrap_or(t_recovered - t_fault);
        let after_restart = longest_blackhole(&attempts, t_recovered, t_end);

        let claims = watch.claims(lb.vip, claims_from, t_end);
        let problems = check_handover(&claims, t_fault, &watch.mac_of(old), &new_mac, |m| {
            watch.who(m)
        });
        let doubles = double_answer_spans(&claims, &watch.rounds(lb.vip));
        if !problems.is_empty() || !doubles.is_empty() {
            let mut lines = problems;
            for (a, b, macs) in doubles {
                let who: Vec<String> = macs.iter().map(|m| watch.who(m)).collect();
                lines.push(format!(
                    "two MACs answered one NS from {} ms to {} ms: {who:?}",
                    a.saturating_duration_since(t_fault).as_millis(),
                    b.saturating_duration_since(t_fault).as_millis()
                ));
            }
            violations.push(format!(
                "round {round}: VIP {}, owner {old} -> {new}, kill at +0 ms:\n  {}\n  NAs:\n{}",
                lb.vip,
                lines.join("\n  "),
                timeline(&claims, t_fault, |m| watch.who(m))
            ));
        }
        if outage >= FAILOVER_BOUND {
            violations.push(format!(
                "round {round}: outage {} (bound {})",
                ms(outage),
                ms(FAILOVER_BOUND)
            ));
        }
        let cache = match client_neighbour(&lab, lb.vip) {
            Some((mac, state)) => {
                if mac != watch.mac_of(final_owner) {
                    violations.push(format!(
                        "round {round}: the client's neighbour entry sends VIP {} to {} ({state}), not to the owner node {final_owner}",
                        lb.vip,
                        watch.who(&mac)
                    ));
                }
                format!("{} {state}", watch.who(&mac))
            }
            None => "no entry".into(),
        };
        outages.push(outage);
        if let Some(t) = takeover {
            takeovers.push(t);
        }
        let line = format!(
            "{round:>5} | {old} -> {new} | {leader} | {} | {} | {} | {} | client neighbour: {cache}",
            ms(outage),
            takeover.map(ms).unwrap_or_else(|| "-".into()),
            ms(api_move),
            ms(after_restart)
        );
        say(&format!("{test}: {line}"));
        let _ = writeln!(table, "{line}");
    }

    let report = writers.finish().await;
    let summary = |v: &[Duration]| match Summary::of(v) {
        Some(s) => format!(
            "{} | {} | {} | {}",
            ms(s.min),
            ms(s.median),
            ms(s.p99),
            ms(s.max)
        ),
        None => "- | - | - | -".into(),
    };
    let text = format!(
        "\n===== {test}: kill -9 owner of an IPv6 VIP (follower) ({} rounds) =====\nround | old -> new | leader | outage | NA takeover | API moved | max blackhole after restart | note\n{table}metric | min | median | p99 | max\noutage | {}\nNA takeover | {}\nwriters: {}\n",
        outages.len(),
        summary(&outages),
        summary(&takeovers),
        report.line()
    );
    say(&text);
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("chaos-results");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("vip6_kill_owner.txt"), &text);
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
