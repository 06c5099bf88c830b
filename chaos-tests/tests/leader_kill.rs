//! kill -9 the leader while writers run, five times over: a new leader is elected each time,
//! writes resume, the killed node comes back and catches up, and no acknowledged write is lost.

use std::time::{Duration, Instant};

use fulcrum_chaos_tests::stats::ms;
use fulcrum_chaos_tests::{say, verify_acked, Lab, Summary, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_under_writers_loses_no_acknowledged_write() {
    let Some(mut lab) = Lab::start_or_skip("leader_kill_under_writers").await else {
        return;
    };
    let writers = Writers::start(&lab, 6);
    let mut elections = Vec::new();
    let mut write_outages = Vec::new();
    for round in 1..=5 {
        if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
            lab.fail(&e);
        }
        let (leader, term) = lab.wait_for_leader().await;
        let killed_at = Instant::now();
        lab.kill(leader);
        let (new_leader, new_term) = lab.wait_for_leader_after(term).await;
        let election = killed_at.elapsed();
        let outage = writers
            .wait_for_ack_sent_after(killed_at, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| lab.fail(&e));
        assert_ne!(new_leader, leader, "a killed node cannot lead");
        say(&format!(
            "leader_kill round {round}: killed leader {leader} (term {term}); node {new_leader} leads term {new_term} after {}; writes acknowledged again after {}",
            ms(election),
            ms(outage)
        ));
        elections.push(election);
        write_outages.push(outage);
        lab.start(leader);
        lab.wait_for_catch_up(Duration::from_secs(30)).await;
    }
    let report = writers.finish().await;
    say(&format!("leader_kill: {}", report.line()));
    say(&format!(
        "leader_kill: election time {}",
        Summary::of(&elections).expect("five rounds")
    ));
    say(&format!(
        "leader_kill: write outage {}",
        Summary::of(&write_outages).expect("five rounds")
    ));
    verify_acked(&lab, &report.acks, Duration::from_secs(30)).await;
    lab.assert_no_panics();
}
