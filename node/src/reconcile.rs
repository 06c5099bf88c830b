//! Keeps this node's data plane converged to the committed model, and feeds back what the
//! data plane observed: once the model revision is applied, the leader confirms it (pending
//! objects turn ACTIVE); health-monitor results become members' operating status. Both are
//! written through Raft, and only on change.
//!
//! Today only the leader's own data plane confirms revisions and reports health; collecting
//! every node's applied revision belongs with VIP ownership (the VIP owner's view matters).

use std::collections::HashMap;
use std::time::Duration;

use fulcrum_control::api::StatsSource;
use fulcrum_dataplane::{Dataplane, DataplaneConfig, OperatingStatus as DpStatus};
use fulcrum_proto::internal::{command, Command, ConfirmApplied, MemberHealth};
use fulcrum_proto::v1::{Member, OperatingStatus, Quota, Stats};
use fulcrum_raft::{RaftNode, Role};
use prost::Message;
use tokio::sync::watch;

use crate::replica::ModelApp;
use crate::translate;

/// How often the loop looks again without a new revision (leadership changes, quota defaults).
const TICK: Duration = Duration::from_secs(1);
/// Prefix of the reason recorded for listeners the data plane does not serve at all.
const NOT_SERVED: &str = "not served: ";
/// How long health events are gathered into one report.
const HEALTH_BATCH: Duration = Duration::from_millis(100);

/// An encoded command a node proposes on its own (no request id: nothing is remembered).
pub fn background_command(op: command::Op) -> Vec<u8> {
    Command {
        request_id: String::new(),
        now: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        op: Some(op),
    }
    .encode_to_vec()
}

/// Proposes a background command (no request id: nothing is remembered for it), giving up
/// at shutdown so a node that lost its quorum still stops at once.
pub async fn propose(
    raft: &RaftNode<ModelApp>,
    op: command::Op,
    shutdown: &watch::Receiver<bool>,
) -> bool {
    let mut shutdown = shutdown.clone();
    let result = tokio::select! {
        r = raft.write(background_command(op)) => r,
        _ = shutdown.wait_for(|s| *s) => return false,
    };
    if let Err(e) = &result {
        tracing::debug!(error = %e, "background proposal failed; will retry");
    }
    result.is_ok()
}

fn is_leader(raft: &RaftNode<ModelApp>) -> bool {
    raft.status().role == Role::Leader
}

/// The highest revision up to `revision` that every live voter has in its log.
fn replicated_everywhere(status: &fulcrum_raft::ClusterStatus, revision: u64) -> u64 {
    let live_after = std::time::Duration::from_secs(1);
    status
        .replication
        .iter()
        .flatten()
        .filter(|(id, p)| {
            status.voters.contains_key(id) && p.last_ack_age.is_some_and(|a| a < live_after)
        })
        .map(|(_, p)| p.matched_index.unwrap_or(0))
        .fold(revision, u64::min)
}

/// Applies every new model revision to the data plane and confirms it.
/// Listeners with `connection_limit` -1 get `default_connection_limit`.
pub async fn run(
    raft: RaftNode<ModelApp>,
    dataplane: Dataplane,
    quota_defaults: Quota,
    default_connection_limit: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut applied = raft.applied_index();
    let mut current: Option<DataplaneConfig> = None;
    // Listeners this data plane cannot serve, with the reason.
    let mut errors: HashMap<String, String> = HashMap::new();
    loop {
        let revision = *applied.borrow_and_update();
        let translated =
            raft.read_local(|app| translate::translate(&app.state, default_connection_limit));
        // Listeners that failed to start (e.g. a port in use) are retried on every pass.
        let retry = errors
            .values()
            .any(|reason| !reason.starts_with(NOT_SERVED));
        if retry || current.as_ref() != Some(&translated.config) {
            for note in &translated.skipped {
                tracing::warn!(
                    listener = note.listener_id,
                    reason = note.reason,
                    "listener not served by the data plane"
                );
            }
            for note in &translated.warnings {
                tracing::warn!(
                    listener = note.listener_id,
                    reason = note.reason,
                    "part of a listener not served"
                );
            }
            for r in dataplane.apply(translated.config.clone()).await {
                match r.outcome {
                    Err(e) => {
                        tracing::error!(listener = r.listener_id, error = %e, "listener could not be applied");
                        errors.insert(r.listener_id, e.to_string());
                    }
                    Ok(_) => {
                        errors.remove(&r.listener_id);
                    }
                }
            }
            let served: std::collections::HashSet<&str> = translated
                .config
                .listeners
                .iter()
                .map(|l| l.id.as_str())
                .collect();
            errors.retain(|id, _| served.contains(id.as_str()));
            current = Some(translated.config);
        }
        errors.retain(|_, reason| !reason.starts_with(NOT_SERVED));
        for note in &translated.skipped {
            errors.insert(
                note.listener_id.clone(),
                format!("{NOT_SERVED}{}", note.reason),
            );
        }
        let status = raft.status();
        if status.role == Role::Leader {
            // Confirm only what every live node has too (replicated to it; its data plane
            // applies what it has); a dead node does not hold statuses back.
            let revision = replicated_everywhere(&status, revision);
            let (pending, recorded, defaults) = raft.read_local(|app| {
                (
                    app.state.pending_up_to(revision),
                    app.state.listener_errors(),
                    app.state.quota_defaults().clone(),
                )
            });
            if pending || recorded != errors {
                let confirm = ConfirmApplied {
                    revision,
                    listener_errors: errors.clone(),
                };
                propose(&raft, command::Op::ConfirmApplied(confirm), &shutdown).await;
            }
            if defaults != quota_defaults {
                propose(
                    &raft,
                    command::Op::SetQuotaDefaults(quota_defaults.clone()),
                    &shutdown,
                )
                .await;
            }
        }
        tokio::select! {
            r = applied.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

fn model_status(s: DpStatus) -> OperatingStatus {
    match s {
        DpStatus::Online => OperatingStatus::Online,
        DpStatus::Error => OperatingStatus::Error,
        DpStatus::Draining => OperatingStatus::Draining,
        DpStatus::Offline => OperatingStatus::Offline,
        DpStatus::NoMonitor => OperatingStatus::NoMonitor,
    }
}

/// Writes members' health as the data plane sees it into the model, when it differs.
pub async fn report_health(
    raft: RaftNode<ModelApp>,
    dataplane: Dataplane,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = dataplane.subscribe_health();
    loop {
        if is_leader(&raft) {
            let observed = dataplane.member_health();
            let changed: HashMap<String, i32> = raft.read_local(|app| {
                observed
                    .iter()
                    .filter_map(|(id, s)| {
                        let status = model_status(*s) as i32;
                        let m = app.state.get::<Member>(id)?;
                        (m.operating_status != status
                            && matches!(
                                model_status(*s),
                                OperatingStatus::Online
                                    | OperatingStatus::Error
                                    | OperatingStatus::Draining
                            ))
                        .then(|| (id.clone(), status))
                    })
                    .collect()
            });
            if !changed.is_empty() {
                let op = command::Op::MemberHealth(MemberHealth { statuses: changed });
                propose(&raft, op, &shutdown).await;
            }
        }
        let event = tokio::select! {
            _ = events.recv() => true,
            _ = tokio::time::sleep(TICK) => false,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        if event {
            tokio::time::sleep(HEALTH_BATCH).await;
        }
    }
}

/// Traffic counters of this node's data plane.
pub struct DataplaneStats(pub Dataplane);

impl StatsSource for DataplaneStats {
    fn listener_stats(&self, listener_id: &str) -> Stats {
        self.0
            .stats()
            .get(listener_id)
            .map(|s| Stats {
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                active_connections: s.active_connections,
                total_connections: s.total_connections,
                request_errors: s.request_errors,
            })
            .unwrap_or_default()
    }
}
