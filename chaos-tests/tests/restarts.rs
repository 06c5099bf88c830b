//! Restarts under writers: a rolling graceful restart of all three nodes (followers first,
//! the leader last), and a full-cluster crash (kill -9 all) followed by a start of all,
//! then a graceful full restart. Every acknowledged write survives each.

use std::time::{Duration, Instant};

use fulcrum_chaos_tests::stats::ms;
use fulcrum_chaos_tests::{say, verify_acked, Lab, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_all_three() {
    let Some(mut lab) = Lab::start_or_skip("rolling_restart_of_all_three").await else {
        return;
    };
    let writers = Writers::start(&lab, 6);
    if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
        lab.fail(&e);
    }
    let (leader, _) = lab.wait_for_leader().await;
    let mut order: Vec<u64> = lab
        .node_ids()
        .into_iter()
        .filter(|n| *n != leader)
        .collect();
    order.push(leader);
    for id in order {
        let (current, term) = lab.wait_for_leader().await;
        let t0 = Instant::now();
        lab.restart(id);
        if id == current {
            // A restarted leader whose vote for itself is committed may take its leadership
            // back without an election (openraft restores it at startup), so no new term is
            // required: only a leader agreed on by a quorum.
            let (new, new_term) = lab.wait_for_leader().await;
            say(&format!(
                "rolling_restart: leader {id} (term {term}) restarted; node {new} leads term {new_term} after {}",
                ms(t0.elapsed())
            ));
        }
        lab.wait_for_catch_up(Duration::from_secs(30)).await;
        let outage = writers
            .wait_for_ack_sent_after(t0, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| lab.fail(&e));
        say(&format!(
            "rolling_restart: node {id} restarted and caught up in {}; writes acknowledged {} after its restart began",
            ms(t0.elapsed()),
            ms(outage)
        ));
    }
    let report = writers.finish().await;
    say(&format!("rolling_restart: {}", report.line()));
    verify_acked(&lab, &report.acks, Duration::from_secs(30)).await;
    lab.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_crash_and_full_restart() {
    let Some(mut lab) = Lab::start_or_skip("full_crash_and_full_restart").await else {
        return;
    };
    let writers = Writers::start(&lab, 6);
    if let Err(e) = writers.wait_for_more(40, Duration::from_secs(20)).await {
        lab.fail(&e);
    }
    // Power loss with writes in flight.
    lab.kill_all();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await; // let in-flight calls fail
    lab.start_all();
    let (leader, term) = lab.wait_for_leader().await;
    say(&format!(
        "full_restart: all nodes killed and started; leader {leader} (term {term}) after {}",
        ms(down_at.elapsed())
    ));
    lab.wait_for_catch_up(Duration::from_secs(30)).await;
    verify_acked(&lab, &writers.acks(), Duration::from_secs(30)).await;
    if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
        lab.fail(&e);
    }

    // Graceful stop of all (SIGTERM to every node at once), start of all.
    let t0 = Instant::now();
    let stops = lab.restart_all();
    let (leader, term) = lab.wait_for_leader().await;
    let stops: Vec<String> = stops
        .iter()
        .map(|(id, d)| match d {
            Some(d) => format!("node {id} exited after {}", ms(*d)),
            None => format!("node {id} KILLED after 10 s"),
        })
        .collect();
    say(&format!(
        "full_restart: graceful restart of all ({}); leader {leader} (term {term}) after {}",
        stops.join(", "),
        ms(t0.elapsed())
    ));
    if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
        lab.fail(&e);
    }
    lab.wait_for_catch_up(Duration::from_secs(30)).await;
    let report = writers.finish().await;
    say(&format!("full_restart: {}", report.line()));
    verify_acked(&lab, &report.acks, Duration::from_secs(30)).await;
    lab.assert_no_panics();
}
