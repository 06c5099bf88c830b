//! Partition the leader into a minority while writers run through every node: the old leader
//! cannot commit (no write through it is acknowledged, its linearizable reads do not answer
//! stale data), the majority elects a new leader and keeps acknowledging writes; after the
//! heal the old leader catches up and no acknowledged write is lost.

use std::time::{Duration, Instant};

use fulcrum_chaos_tests::stats::ms;
use fulcrum_chaos_tests::{create_lb, next_vip, say, verify_acked, Lab, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_in_minority_cannot_commit_and_catches_up_after_heal() {
    let Some(mut lab) = Lab::start_or_skip("leader_in_minority").await else {
        return;
    };
    let writers = Writers::start(&lab, 6);
    if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
        lab.fail(&e);
    }
    let (old, term) = lab.wait_for_leader().await;
    let majority: Vec<u64> = lab.node_ids().into_iter().filter(|n| *n != old).collect();
    let committed_before = lab.status(old).await.map(|s| s.committed).unwrap_or(0);

    let cut_at = Instant::now();
    lab.partition(&[old], &majority);
    // Writes sent before every rule was in place may legitimately commit through the old
    // leader; only those sent after count against the minority.
    let cut_done = Instant::now();
    let (new, new_term) = lab.wait_for_leader_after(term).await;
    let election = cut_at.elapsed();
    assert!(
        majority.contains(&new),
        "the new leader {new} must be on the majority side"
    );
    let outage = writers
        .wait_for_ack_sent_after(cut_at, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| lab.fail(&e));
    say(&format!(
        "partition: leader {old} (term {term}) cut off from {majority:?}; node {new} leads term {new_term} after {}; writes acknowledged again after {}",
        ms(election),
        ms(outage)
    ));
    // The majority keeps committing.
    if let Err(e) = writers.wait_for_more(20, Duration::from_secs(20)).await {
        lab.fail(&e);
    }

    // Writes sent straight to the old leader are never acknowledged.
    for i in 0..3 {
        let (_, vip) = next_vip();
        let r = create_lb(
            &lab,
            old,
            &format!("minority-{i}"),
            &vip,
            Duration::from_secs(2),
        )
        .await;
        if let Ok(id) = r {
            lab.fail(&format!(
                "the minority side (old leader {old}) acknowledged a write: {id}"
            ));
        }
    }
    // Its linearizable reads must not answer without a quorum: an answer that lacks a write
    // the majority acknowledged would be a stale read.
    let acked_now = writers.acks();
    match lab.list_lbs(old, Duration::from_secs(2)).await {
        Err(e) => say(&format!("partition: list on the old leader refused: {e}")),
        Ok(listed) => {
            let missing = acked_now
                .iter()
                .filter(|a| !listed.iter().any(|l| l.id == a.id))
                .count();
            if missing > 0 {
                lab.fail(&format!(
                    "stale read: the partitioned old leader {old} listed load balancers without {missing} acknowledged writes"
                ));
            }
        }
    }
    // Its commit index has not moved past what it had before (it may not have learnt the
    // last entries' commit, but it must not commit anything new on its own).
    if let Ok(s) = lab.status(old).await {
        let majority_commit = lab.status(new).await.map(|s| s.committed).unwrap_or(0);
        say(&format!(
            "partition: old leader committed index {} (before the cut {committed_before}); majority at {majority_commit}",
            s.committed
        ));
        assert!(
            s.committed < majority_commit,
            "the old leader's commit index {} kept up with the majority's {majority_commit} while cut off",
            s.committed
        );
    }

    let healed_at = Instant::now();
    lab.heal_all();
    let caught_up = Instant::now();
    lab.wait_for_catch_up(Duration::from_secs(30)).await;
    say(&format!(
        "partition: after the heal every node caught up in {}",
        ms(caught_up.elapsed())
    ));
    let report = writers.finish().await;
    say(&format!("partition: {}", report.line()));
    let by_minority: Vec<_> = report
        .acks
        .iter()
        .filter(|a| a.via == old && a.sent >= cut_done && a.acked < healed_at)
        .collect();
    if !by_minority.is_empty() {
        lab.fail(&format!(
            "{} writes sent to the partitioned old leader {old} were acknowledged, e.g. {:?}",
            by_minority.len(),
            by_minority[0]
        ));
    }
    verify_acked(&lab, &report.acks, Duration::from_secs(30)).await;
    lab.assert_no_panics();
}
