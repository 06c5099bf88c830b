//! SIGSTOP a follower, then the leader, while writers run: with a frozen follower the
//! cluster keeps acknowledging writes; with a frozen leader the others elect a new one. After
//! SIGCONT the frozen node catches up and no acknowledged write is lost.

use std::time::{Duration, Instant};

use fulcrum_chaos_tests::stats::ms;
use fulcrum_chaos_tests::{say, verify_acked, Lab, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_follower_then_frozen_leader() {
    let Some(mut lab) = Lab::start_or_skip("frozen_follower_then_frozen_leader").await else {
        return;
    };
    let writers = Writers::start(&lab, 6);
    if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
        lab.fail(&e);
    }

    // A frozen follower: the other two still make a quorum.
    let (leader, term) = lab.wait_for_leader().await;
    let follower = lab
        .node_ids()
        .into_iter()
        .find(|n| *n != leader)
        .expect("three nodes");
    let stopped_at = Instant::now();
    lab.stop_process(follower);
    if let Err(e) = writers.wait_for_more(30, Duration::from_secs(20)).await {
        lab.fail(&e);
    }
    let (still, _) = lab.wait_for_leader().await;
    say(&format!(
        "sigstop: follower {follower} frozen; leader {still} (was {leader}, term {term}) acknowledged 30 writes within {}",
        ms(stopped_at.elapsed())
    ));
    lab.cont(follower);
    lab.wait_for_catch_up(Duration::from_secs(30)).await;

    // A frozen leader: the others elect a new one; the old one steps down on SIGCONT.
    let (leader, term) = lab.wait_for_leader().await;
    let stopped_at = Instant::now();
    lab.stop_process(leader);
    let (new, new_term) = lab.wait_for_leader_after(term).await;
    let election = stopped_at.elapsed();
    let outage = writers
        .wait_for_ack_sent_after(stopped_at, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    assert_ne!(new, leader);
    say(&format!(
        "sigstop: leader {leader} (term {term}) frozen; node {new} leads term {new_term} after {}; writes acknowledged again after {}",
        ms(election),
        ms(outage)
    ));
    if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
        lab.fail(&e);
    }
    lab.cont(leader);
    lab.wait_for_catch_up(Duration::from_secs(30)).await;
    let (after, _) = lab.wait_for_leader().await;
    say(&format!(
        "sigstop: after SIGCONT node {leader} caught up; leader is {after}"
    ));
    let report = writers.finish().await;
    say(&format!("sigstop: {}", report.line()));
    verify_acked(&lab, &report.acks, Duration::from_secs(30)).await;
    lab.assert_no_panics();
}
