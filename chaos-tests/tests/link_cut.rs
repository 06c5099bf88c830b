//! Pull a node's cable and plug it back in: first a follower (the cluster keeps serving; the
//! probe from the client sees the node vanish and return), then the leader (the others elect
//! a new one). Each cut node catches up after the heal; no acknowledged write is lost. Also
//! checks the ARP observer: the client sees each node answer ARP with its own MAC.

use std::time::{Duration, Instant};

use fulcrum_chaos_tests::netns::ip;
use fulcrum_chaos_tests::stats::ms;
use fulcrum_chaos_tests::{say, verify_acked, ArpObserver, Lab, VipProbe, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_follower_then_leader_and_heal() {
    let Some(mut lab) = Lab::start_or_skip("cut_follower_then_leader_and_heal").await else {
        return;
    };

    // The ARP observer sees each node claim its own address with its own MAC.
    let arp = ArpObserver::start(lab.client_netns()).unwrap_or_else(|e| lab.fail(&e));
    let since = Instant::now();
    ip(&["-n", lab.client_netns(), "neigh", "flush", "all"]).unwrap_or_else(|e| lab.fail(&e));
    for id in lab.node_ids() {
        let mac = lab.node_mac(id).unwrap_or_else(|e| lab.fail(&e));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let _ = lab.status(id).await; // makes the client resolve the node's address
            let macs = arp.macs_for(lab.node_ip(id), since);
            if macs.contains(&mac) {
                assert_eq!(macs.len(), 1, "node {id}'s address claimed by {macs:?}");
                break;
            }
            if Instant::now() > deadline {
                lab.fail(&format!(
                    "ARP observer saw no reply from node {id} ({mac}); saw {:?}",
                    arp.events()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let writers = Writers::start(&lab, 6);
    if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
        lab.fail(&e);
    }

    // A follower's cable.
    let (leader, term) = lab.wait_for_leader().await;
    let follower = lab
        .node_ids()
        .into_iter()
        .find(|n| *n != leader)
        .expect("three nodes");
    let probe = VipProbe::start(
        lab.client(),
        lab.admin_addr(follower),
        Duration::from_millis(50),
    );
    wait_until(&lab, "probe reaches the follower", || {
        probe.last_ok() == Some(true)
    })
    .await;
    let cut_at = Instant::now();
    lab.cut(follower);
    if let Err(e) = writers.wait_for_more(30, Duration::from_secs(20)).await {
        lab.fail(&e);
    }
    wait_until(&lab, "probe notices the cut", || {
        probe.last_ok() == Some(false)
    })
    .await;
    let (still, _) = lab.wait_for_leader().await;
    lab.heal(follower);
    let healed_at = Instant::now();
    wait_until(&lab, "probe reaches the healed follower", || {
        probe.last_ok() == Some(true)
    })
    .await;
    lab.wait_for_catch_up(Duration::from_secs(30)).await;
    let outages = probe.finish_outages().await;
    assert_eq!(outages.len(), 1, "one outage expected, got {outages:?}");
    let o = outages[0];
    assert!(
        o.from >= cut_at && o.from - cut_at < Duration::from_millis(500),
        "outage began {:?} after the cut",
        o.from.saturating_duration_since(cut_at)
    );
    say(&format!(
        "link_cut: follower {follower} cut for {}; leader {still} (was {leader}, term {term}) kept serving; probe outage {}; caught up {} after the heal",
        ms(healed_at - cut_at),
        ms(o.len()),
        ms(healed_at.elapsed())
    ));

    // The leader's cable.
    let (leader, term) = lab.wait_for_leader().await;
    let cut_at = Instant::now();
    lab.cut(leader);
    let (new, new_term) = lab.wait_for_leader_after(term).await;
    let election = cut_at.elapsed();
    let outage = writers
        .wait_for_ack_sent_after(cut_at, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    assert_ne!(new, leader);
    say(&format!(
        "link_cut: leader {leader} (term {term}) cut; node {new} leads term {new_term} after {}; writes acknowledged again after {}",
        ms(election),
        ms(outage)
    ));
    if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
        lab.fail(&e);
    }
    lab.heal_all();
    lab.wait_for_catch_up(Duration::from_secs(30)).await;
    let report = writers.finish().await;
    say(&format!("link_cut: {}", report.line()));
    verify_acked(&lab, &report.acks, Duration::from_secs(30)).await;
    lab.assert_no_panics();
}

async fn wait_until(lab: &Lab, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        if Instant::now() > deadline {
            lab.fail(&format!("timed out waiting until {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
