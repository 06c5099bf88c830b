//! [`RaftNode`]: start, serve, write, read, membership, status, shutdown.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::time::Duration;
use std::time::Instant;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::errors::ForwardToLeader;
use openraft::errors::InitializeError;
use openraft::errors::LinearizableReadError;
use openraft::BasicNode;
use openraft::ReadPolicy;
use openraft::ServerState;
use openraft::SnapshotPolicy;
use rocksdb::DB;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;

use crate::lease::Grant;
use crate::lease::Leases;
use crate::network::is_connect_failure;
use crate::network::NetworkFactory;
use crate::network::PeerClients;
use crate::network::MAX_MESSAGE_BYTES;
use crate::pb;
use crate::pb::raft_peer_server::RaftPeerServer;
use crate::service::PeerService;
use crate::store;
use crate::store::LogStore;
use crate::store::SmShared;
use crate::store::StateMachineStore;
use crate::types::Command;
use crate::types::TypeConfig;
use crate::App;
use crate::ClusterStatus;
use crate::PeerProgress;
use crate::RaftConfig;
use crate::RaftError;
use crate::Role;

pub(crate) type OpenRaft<A> = openraft::Raft<TypeConfig, StateMachineStore<A>>;

/// One member of a Raft cluster replicating an [`App`]. Cheap to clone.
pub struct RaftNode<A: App> {
    pub(crate) inner: Arc<Inner<A>>,
}

impl<A: App> Clone for RaftNode<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Inner<A: App> {
    pub(crate) id: u64,
    pub(crate) config: RaftConfig,
    pub(crate) raft: OpenRaft<A>,
    shared: Arc<SmShared<A>>,
    clients: PeerClients,
    /// Follower leases, both sides.
    pub(crate) leases: Leases,
    /// Set to `true` by [`RaftNode::shutdown`]; stops `serve_peer`.
    stopped: watch::Sender<bool>,
    /// The database, to wait for it to close on shutdown.
    db: Weak<store::Db>,
    /// Receives a message once RocksDB has finished closing.
    db_closed: Mutex<std::sync::mpsc::Receiver<()>>,
}

/// An operation that must run on the leader.
#[derive(Clone)]
pub(crate) enum Op {
    Write(Vec<u8>),
    ReadIndex,
    AddLearner(u64, String),
    ChangeVoters(BTreeSet<u64>),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Write(_) => "write",
            Op::ReadIndex => "read index",
            Op::AddLearner(..) => "add learner",
            Op::ChangeVoters(_) => "change voters",
        }
    }
}

/// Result of an [`Op`].
pub(crate) enum Out {
    Bytes(Vec<u8>),
    Index(u64),
    Unit,
}

/// One attempt at running an [`Op`] on the node believed to be the leader.
pub(crate) enum Attempt {
    Done(Out),
    /// Not the leader (nothing was done); the leader it knows of, with its address if known.
    NotLeader(Option<(u64, Option<String>)>),
}

fn forward_hint(f: &ForwardToLeader<TypeConfig>) -> Attempt {
    Attempt::NotLeader(
        f.leader_id
            .map(|id| (id, f.leader_node.as_ref().map(|n| n.addr.clone()))),
    )
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Open RocksDB, retrying for a while if a previous instance in this process still holds the
/// lock (it closes asynchronously after shutdown).
async fn open_db_with_retry(config: &RaftConfig) -> Result<DB, RaftError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let path = config.data_dir.clone();
        let res = tokio::task::spawn_blocking(move || store::open_db(&path))
            .await
            .map_err(|e| RaftError::Storage(e.to_string()))?;
        match res {
            Ok(db) => return Ok(db),
            Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(RaftError::Storage(format!(
                    "open RocksDB at {}: {e}",
                    config.data_dir.display()
                )));
            }
        }
    }
}

fn openraft_config(c: &RaftConfig) -> Result<openraft::Config, RaftError> {
    if c.lease_ms == 0 || c.lease_ms >= c.election_timeout_max_ms {
        return Err(RaftError::Config(format!(
            "lease_ms ({}) must be positive and shorter than election_timeout_max_ms ({}), the Raft leader lease",
            c.lease_ms, c.election_timeout_max_ms
        )));
    }
    let oc = openraft::Config {
        cluster_name: "fulcrum".to_string(),
        heartbeat_interval: c.heartbeat_ms,
        election_timeout_min: c.election_timeout_min_ms,
        election_timeout_max: c.election_timeout_max_ms,
        install_snapshot_timeout: c.snapshot_timeout_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every_logs.max(1)),
        max_in_snapshot_log_to_keep: c.logs_kept_after_snapshot,
        purge_batch_size: 256,
        replication_lag_threshold: c.snapshot_every_logs.max(1).saturating_mul(2).max(5000),
        enable_pre_vote: Some(true),
        backoff: "50ms 100ms ...500ms".to_string(),
        ..Default::default()
    };
    oc.validate().map_err(|e| RaftError::Config(e.to_string()))
}

impl<A: App> RaftNode<A> {
    /// Open the node's RocksDB (creating it if missing), restore `app` from the persisted
    /// records and start the Raft node. Call [`serve_peer`](Self::serve_peer) to answer peers
    /// and [`initialize_if_fresh`](Self::initialize_if_fresh) to form a new cluster.
    pub async fn start(config: RaftConfig, mut app: A) -> Result<Self, RaftError> {
        if config.peer_addr.is_empty() {
            return Err(RaftError::Config("peer_addr is empty".into()));
        }
        let oconfig = Arc::new(openraft_config(&config)?);
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            RaftError::Storage(format!(
                "create data dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let (db, db_closed) = store::Db::new(open_db_with_retry(&config).await?);
        let db = Arc::new(db);
        let persisted = store::read_persisted_state(&db)
            .map_err(|e| RaftError::Storage(format!("read state machine: {e}")))?;
        let applied_index = persisted
            .last_applied
            .as_ref()
            .map(|l| l.index)
            .unwrap_or(0);
        app.restore(persisted.records).map_err(|e| {
            RaftError::Storage(format!("the application refused the persisted state: {e}"))
        })?;
        tracing::info!(
            node_id = config.node_id,
            applied_index,
            "raft state restored from disk"
        );

        let shared = Arc::new(SmShared::new(app, applied_index));
        let log_store = LogStore::new(db.clone())
            .map_err(|e| RaftError::Storage(format!("start log syncer: {e}")))?;
        let sm = StateMachineStore::new(
            db.clone(),
            shared.clone(),
            persisted.last_applied,
            persisted.last_membership,
        );
        let clients = PeerClients::default();
        let network = NetworkFactory {
            clients: clients.clone(),
            min_deadline: Duration::from_millis(config.election_timeout_max_ms),
        };
        let raft = openraft::Raft::new(config.node_id, oconfig, network, log_store, sm)
            .await
            .map_err(|e| RaftError::Fatal(e.to_string()))?;
        let weak_db = Arc::downgrade(&db);
        drop(db);

        let node = Self {
            inner: Arc::new(Inner {
                id: config.node_id,
                config,
                raft,
                shared,
                clients,
                leases: Leases::default(),
                stopped: watch::channel(false).0,
                db: weak_db,
                db_closed: Mutex::new(db_closed),
            }),
        };
        tokio::spawn(renew_leases(Arc::downgrade(&node.inner)));
        Ok(node)
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.id
    }

    /// The peer gRPC service (Raft RPCs + forwarding), to mount on a tonic router yourself.
    /// [`serve_peer`](Self::serve_peer) serves it alone.
    pub fn peer_service(&self) -> RaftPeerServer<PeerService<A>> {
        RaftPeerServer::new(PeerService::new(self.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Serve the peer gRPC service on an already bound listener until `shutdown` resolves or
    /// the node is shut down.
    pub async fn serve_peer(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RaftError> {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut stopped = self.inner.stopped.subscribe();
        let stop = async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        };
        tonic::transport::Server::builder()
            .add_service(self.peer_service())
            .serve_with_incoming_shutdown(incoming, stop)
            .await
            .map_err(|e| RaftError::Transport(format!("peer server: {e}")))
    }

    /// Initialize the cluster with `initial_members` if this node has never been initialized.
    ///
    /// Idempotent: a node that already has a log, or is not in `initial_members`, or has an
    /// empty `initial_members`, does nothing. Calling it on every initial member (with the same
    /// `initial_members`) is safe. Never call it on a node whose data was wiped while the
    /// cluster lives on: add such a node back as a learner instead.
    pub async fn initialize_if_fresh(&self) -> Result<(), RaftError> {
        let cfg = &self.inner.config;
        if cfg.initial_members.is_empty() || !cfg.initial_members.contains_key(&self.inner.id) {
            return Ok(());
        }
        let raft = &self.inner.raft;
        if raft
            .is_initialized()
            .await
            .map_err(|e| RaftError::Fatal(e.to_string()))?
        {
            return Ok(());
        }
        let nodes: BTreeMap<u64, BasicNode> = cfg
            .initial_members
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        match raft.initialize(nodes).await {
            Ok(()) => {
                tracing::info!(node_id = self.inner.id, "initialized a new raft cluster");
                Ok(())
            }
            Err(openraft::errors::RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(openraft::errors::RaftError::APIError(InitializeError::NotInMembers(e))) => {
                Err(RaftError::Config(e.to_string()))
            }
            Err(openraft::errors::RaftError::Fatal(e)) => Err(RaftError::Fatal(e.to_string())),
        }
    }

    /// Propose a command; returns the App's response once the command is committed on a
    /// quorum and applied (and persisted) on the leader.
    ///
    /// On a follower the command is forwarded to the leader over the peer service. While no
    /// leader is known (e.g. during an election) it retries for up to `leader_wait_ms`.
    pub async fn write(&self, command: Vec<u8>) -> Result<Vec<u8>, RaftError> {
        match self.on_leader(Op::Write(command)).await? {
            Out::Bytes(b) => Ok(b),
            _ => Err(RaftError::Protocol(
                "unexpected result kind for a write".into(),
            )),
        }
    }

    /// Linearizable read: obtain a read index from the leader (forwarding if this node is not
    /// the leader), wait until this node has applied it, then run `f` on the local state
    /// (under the read lock, as in [`read_local`](Self::read_local)).
    pub async fn read_linearizable<R>(&self, f: impl FnOnce(&A) -> R) -> Result<R, RaftError> {
        let index = match self.on_leader(Op::ReadIndex).await? {
            Out::Index(i) => i,
            _ => {
                return Err(RaftError::Protocol(
                    "unexpected result kind for a read index".into(),
                ))
            }
        };
        self.wait_applied(index).await?;
        Ok(f(&store::read_app(&self.inner.shared)))
    }

    /// Local read of this node's state (possibly stale). `f` runs under the state's read
    /// lock, which blocks applying entries meanwhile: keep it short (copy out what you need).
    pub fn read_local<R>(&self, f: impl FnOnce(&A) -> R) -> R {
        f(&store::read_app(&self.inner.shared))
    }

    /// Watch of the index of the last applied (and persisted) log entry.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.inner.shared.applied_tx.subscribe()
    }

    /// Leader side of a lease renewal (see the lease module): grants, returning the last log
    /// index, only to a member, while this node leads `term` and a quorum acknowledged it
    /// within the Raft leader lease, so no other node can be leading. The last log index,
    /// not the commit index: a decision proposed but not yet committed (a VIP moved away
    /// from the asking node) must be applied there before the grant counts.
    pub(crate) fn grant_lease(&self, node_id: u64, term: u64, holding: bool) -> Option<u64> {
        let received = Instant::now();
        let metrics_rx = self.inner.raft.metrics();
        let m = metrics_rx.borrow_watched();
        let leader_lease = Duration::from_millis(self.inner.config.election_timeout_max_ms);
        let member = m
            .membership_config
            .membership()
            .get_node(&node_id)
            .is_some();
        if !member || m.state != ServerState::Leader || m.current_term != term {
            return None;
        }
        // Every request of this term counts as contact, granted or not.
        let may_grant = self
            .inner
            .leases
            .requested(node_id, term, holding, received);
        let sole_leader = may_grant
            && m.last_quorum_acked
                .as_ref()
                .is_some_and(|t| openraft::Instant::elapsed(&**t) < leader_lease);
        sole_leader.then(|| m.last_log_index.unwrap_or(0))
    }

    /// On the leader: stops granting leases to those of `nodes` that sent it no lease
    /// request for `silent_for` (longer than a lease), checked and revoked at once; returns
    /// them. Their leases have run out and no new one is granted until
    /// [`restore_leases`](Self::restore_leases), so whatever is moved away from them in the
    /// meantime is free at once. Empty when this node does not lead.
    pub fn revoke_silent_leases(&self, nodes: &[u64], silent_for: Duration) -> Vec<u64> {
        let term = {
            let metrics_rx = self.inner.raft.metrics();
            let m = metrics_rx.borrow_watched();
            if m.state != ServerState::Leader {
                return Vec::new();
            }
            m.current_term
        };
        self.inner.leases.revoke_silent(nodes, term, silent_for)
    }

    /// Grants leases to `nodes` again (after what was moved away from them committed: new
    /// grants carry a log index that includes the move).
    pub fn restore_leases(&self, nodes: &[u64]) {
        self.inner.leases.restore(nodes);
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let metrics_rx = self.inner.raft.metrics();
        let m = metrics_rx.borrow_watched();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let membership = m.membership_config.membership();
        let addr = |id: &u64| {
            membership
                .get_node(id)
                .map(|n| n.addr.clone())
                .unwrap_or_default()
        };
        let voters = membership.voter_ids().map(|id| (id, addr(&id))).collect();
        let learners = membership.learner_ids().map(|id| (id, addr(&id))).collect();
        let replication = m.replication.as_ref().map(|r| {
            r.iter()
                .filter(|(id, _)| **id != self.inner.id)
                .map(|(id, matched)| {
                    let (lease_request_age, holding_request_age) =
                        self.inner.leases.request_ages(*id, m.current_term);
                    let last_ack_age = m
                        .heartbeat
                        .as_ref()
                        .and_then(|h| h.get(id).cloned().flatten())
                        .map(|t| openraft::Instant::elapsed(&*t));
                    (
                        *id,
                        PeerProgress {
                            matched_index: matched.as_ref().map(|l| l.index),
                            last_ack_age,
                            lease_request_age,
                            holding_request_age,
                        },
                    )
                })
                .collect()
        });
        let (lease_since, lease_log_index) = if role == Role::Leader {
            // The age and this instant are read together, so their difference is when.
            let now = Instant::now();
            let since = m
                .last_quorum_acked
                .as_ref()
                .map(|t| openraft::Instant::elapsed(&**t))
                .and_then(|age| now.checked_sub(age));
            (since, None)
        } else {
            let applied = *self.inner.shared.applied_tx.borrow();
            let grant = m
                .current_leader
                .and_then(|l| self.inner.leases.grant_from(l, m.current_term, applied));
            (grant.map(|g| g.sent_at), grant.map(|g| g.log_index))
        };
        let lease_age = lease_since.map(|t| t.elapsed());
        ClusterStatus {
            node_id: self.inner.id,
            role,
            leader_id: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.as_ref().map(|l| l.index),
            last_applied: *self.inner.shared.applied_tx.borrow(),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            purged_index: m.purged.as_ref().map(|l| l.index),
            voters,
            learners,
            membership_committed: m.membership_config.log_id()
                == m.committed_membership_config.log_id(),
            replication,
            lease_age,
            lease_since,
            lease_log_index,
        }
    }

    /// Add (or re-add with the same address) a learner, forwarding to the leader if needed.
    /// Returns once the membership change is committed and the learner has caught up with the
    /// leader's log.
    pub async fn add_learner(&self, node_id: u64, peer_addr: String) -> Result<(), RaftError> {
        self.on_leader(Op::AddLearner(node_id, peer_addr))
            .await
            .map(|_| ())
    }

    /// Make `voters` the set of voters: members not in it are removed from the cluster, and
    /// every id in it must already be a voter or a learner (see [`add_learner`](Self::add_learner)).
    /// Forwards to the leader if needed; returns once the change is committed.
    pub async fn change_voters(&self, voters: BTreeSet<u64>) -> Result<(), RaftError> {
        self.on_leader(Op::ChangeVoters(voters)).await.map(|_| ())
    }

    /// If this node leads, hands leadership to the most up-to-date voter that acknowledged
    /// within an election timeout, and waits (at most `within`) until another node leads.
    /// Returns the new leader, or `None` if this node did not lead or no one took over.
    /// A stopping leader calls this first, so the cluster needs no election timeout to go on.
    pub async fn step_down(&self, within: Duration) -> Option<u64> {
        let status = self.status();
        if status.role != Role::Leader {
            return None;
        }
        let recent = Duration::from_millis(self.inner.config.election_timeout_min_ms);
        let target = status
            .replication
            .as_ref()?
            .iter()
            .filter(|(id, p)| {
                let heard = |age: Option<Duration>| age.is_some_and(|a| a < recent);
                **id != self.inner.id
                    && status.voters.contains_key(id)
                    && (heard(p.last_ack_age) || heard(p.lease_request_age))
            })
            // Rather a node that holds a lease (its link to this node is good), then the most
            // up-to-date.
            .max_by_key(|(id, p)| {
                let holding = p.holding_request_age.is_some_and(|a| a < recent);
                (holding, p.matched_index, std::cmp::Reverse(**id))
            })
            .map(|(id, _)| *id)?;
        if let Err(e) = self.inner.raft.trigger().transfer_leader(target).await {
            tracing::warn!(node_id = self.inner.id, error = %e, "cannot hand leadership over");
            return None;
        }
        let me = self.inner.id;
        let changed = self
            .inner
            .raft
            .wait(Some(within))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "another node leads",
            )
            .await;
        match changed {
            Ok(m) => {
                tracing::info!(node_id = me, new_leader = ?m.current_leader, "handed leadership over");
                m.current_leader
            }
            Err(e) => {
                tracing::warn!(node_id = me, error = %e, "leadership hand-over did not complete");
                None
            }
        }
    }

    /// Stop the Raft node and the peer server started by [`serve_peer`](Self::serve_peer), and
    /// wait (up to 10 s) for RocksDB to close, so the data directory can be reopened.
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        self.inner.stopped.send_replace(true);
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| RaftError::Fatal(format!("raft core task failed: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let closed = || {
            self.inner
                .db_closed
                .lock()
                .map(|rx| rx.try_recv() != Err(std::sync::mpsc::TryRecvError::Empty))
                .unwrap_or(true)
        };
        while self.inner.db.strong_count() > 0 || !closed() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    node_id = self.inner.id,
                    "RocksDB still open 10 s after shutdown"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    fn is_stopped(&self) -> bool {
        *self.inner.stopped.borrow()
    }

    /// Wait until this node has applied `index`.
    async fn wait_applied(&self, index: u64) -> Result<(), RaftError> {
        let mut rx = self.inner.shared.applied_tx.subscribe();
        let wait = Duration::from_millis(self.inner.config.write_timeout_ms);
        let res = tokio::time::timeout(wait, async {
            rx.wait_for(|&i| i >= index).await.map(|_| ())
        })
        .await;
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(RaftError::Fatal("state machine stopped".into())),
            Err(_) => Err(RaftError::ReadTimeout {
                index,
                applied: *self.inner.shared.applied_tx.borrow(),
                waited_ms: ms(wait),
            }),
        }
    }

    /// The leader this node knows of, with its address.
    fn known_leader(&self) -> Option<(u64, Option<String>)> {
        let rx = self.inner.raft.metrics();
        let m = rx.borrow_watched();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone());
        Some((id, addr))
    }

    /// Run `op` on the leader: locally if this node leads, else forwarded; retry while no
    /// leader is known or the target turns out not to lead, up to `leader_wait_ms`.
    async fn on_leader(&self, op: Op) -> Result<Out, RaftError> {
        if self.is_stopped() {
            return Err(RaftError::Fatal("raft node is shut down".into()));
        }
        let start = Instant::now();
        let wait = Duration::from_millis(self.inner.config.leader_wait_ms);
        let mut backoff = Duration::from_millis(5);
        let mut hint: Option<(u64, Option<String>)> = None;
        loop {
            let target = hint.take().or_else(|| self.known_leader());
            let attempt = match target {
                Some((id, _)) if id == self.inner.id => self.run_local(&op).await?,
                Some((id, addr)) => match addr
                    .or_else(|| self.known_leader().filter(|l| l.0 == id).and_then(|l| l.1))
                {
                    Some(addr) => self.run_remote(id, &addr, &op).await?,
                    None => Attempt::NotLeader(None),
                },
                None => Attempt::NotLeader(None),
            };
            match attempt {
                Attempt::Done(out) => return Ok(out),
                Attempt::NotLeader(h) => {
                    let elapsed = start.elapsed();
                    if elapsed >= wait || self.is_stopped() {
                        return Err(RaftError::NoLeader {
                            waited_ms: ms(elapsed),
                        });
                    }
                    hint = h;
                    tokio::time::sleep(backoff.min(wait - elapsed)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                    tracing::debug!(op = op.name(), ?hint, "no usable leader yet, retrying");
                }
            }
        }
    }

    /// Run `op` on this node, which believes it is the leader.
    pub(crate) async fn run_local(&self, op: &Op) -> Result<Attempt, RaftError> {
        use openraft::errors::RaftError as ORaftError;
        let raft = &self.inner.raft;
        let cfg = &self.inner.config;
        match op {
            Op::Write(cmd) => {
                let wait = Duration::from_millis(cfg.write_timeout_ms);
                match tokio::time::timeout(wait, raft.client_write(Command(cmd.clone()))).await {
                    Ok(Ok(resp)) => Ok(Attempt::Done(Out::Bytes(resp.data))),
                    Ok(Err(ORaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                        Ok(forward_hint(&f))
                    }
                    Ok(Err(ORaftError::APIError(ClientWriteError::LogEntryDiscarded(f)))) => {
                        Err(RaftError::OutcomeUnknown {
                            reason: format!(
                                "leadership changed before the command committed ({f})"
                            ),
                        })
                    }
                    Ok(Err(ORaftError::APIError(e))) => Err(RaftError::OutcomeUnknown {
                        reason: format!("write failed: {e}"),
                    }),
                    Ok(Err(ORaftError::Fatal(e))) => Err(RaftError::OutcomeUnknown {
                        reason: format!("raft node stopped while the command was in flight: {e}"),
                    }),
                    Err(_) => Err(RaftError::OutcomeUnknown {
                        reason: format!("command not committed within {} ms", ms(wait)),
                    }),
                }
            }
            Op::ReadIndex => {
                let wait = Duration::from_millis(cfg.write_timeout_ms);
                match tokio::time::timeout(wait, raft.get_read_linearizer(ReadPolicy::ReadIndex))
                    .await
                {
                    Ok(Ok(lin)) => Ok(Attempt::Done(Out::Index(lin.read_log_id().index()))),
                    Ok(Err(ORaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                        Ok(forward_hint(&f))
                    }
                    Ok(Err(ORaftError::APIError(LinearizableReadError::QuorumNotEnough(q)))) => {
                        Err(RaftError::QuorumUnavailable(q.to_string()))
                    }
                    Ok(Err(ORaftError::Fatal(e))) => Err(RaftError::Fatal(e.to_string())),
                    Err(_) => Err(RaftError::QuorumUnavailable(format!(
                        "leadership not confirmed within {} ms",
                        ms(wait)
                    ))),
                }
            }
            Op::AddLearner(id, addr) => {
                let wait = Duration::from_millis(cfg.membership_timeout_ms);
                let node = BasicNode { addr: addr.clone() };
                let res = tokio::time::timeout(wait, raft.add_learner(*id, node, true)).await;
                membership_result(op, wait, res)
            }
            Op::ChangeVoters(voters) => {
                let wait = Duration::from_millis(cfg.membership_timeout_ms);
                let res =
                    tokio::time::timeout(wait, raft.change_membership(voters.clone(), false)).await;
                membership_result(op, wait, res)
            }
        }
    }

    /// Forward `op` to the node `leader_id` at `addr`.
    /// Resolves once this node knows a leader other than `leader_id`.
    async fn leader_moved_from(&self, leader_id: u64) {
        let mut rx = self.inner.raft.metrics();
        loop {
            if rx
                .borrow_watched()
                .current_leader
                .is_some_and(|l| l != leader_id)
            {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    async fn run_remote(&self, leader_id: u64, addr: &str, op: &Op) -> Result<Attempt, RaftError> {
        let forward_err = |reason: String, outcome_unknown: bool| RaftError::Forward {
            leader_id,
            addr: addr.to_string(),
            reason,
            outcome_unknown,
        };
        let mut client = self
            .inner
            .clients
            .client(addr)
            .map_err(|e| forward_err(e, false))?;
        let cfg = &self.inner.config;
        // The leader bounds the operation itself; give it a little extra for the transport.
        let slack = Duration::from_secs(2);
        let is_write = matches!(op, Op::Write(_));
        let call = async {
            match op {
                Op::Write(cmd) => {
                    let wait = Duration::from_millis(cfg.write_timeout_ms) + slack;
                    let req = pb::ForwardRequest {
                        command: cmd.clone(),
                    };
                    tokio::time::timeout(wait, client.forward(req))
                        .await
                        .map(|r| {
                            r.map(|resp| {
                                let resp = resp.into_inner();
                                (resp.error, Out::Bytes(resp.response))
                            })
                        })
                }
                Op::ReadIndex => {
                    let wait = Duration::from_millis(cfg.write_timeout_ms) + slack;
                    tokio::time::timeout(wait, client.read_index(pb::ReadIndexRequest {}))
                        .await
                        .map(|r| {
                            r.map(|resp| {
                                let resp = resp.into_inner();
                                (resp.error, Out::Index(resp.index))
                            })
                        })
                }
                Op::AddLearner(id, learner_addr) => {
                    let wait = Duration::from_millis(cfg.membership_timeout_ms) + slack;
                    let req = pb::AddLearnerRequest {
                        node_id: *id,
                        addr: learner_addr.clone(),
                    };
                    tokio::time::timeout(wait, client.add_learner(req))
                        .await
                        .map(|r| r.map(|resp| (resp.into_inner().error, Out::Unit)))
                }
                Op::ChangeVoters(voters) => {
                    let wait = Duration::from_millis(cfg.membership_timeout_ms) + slack;
                    let req = pb::ChangeVotersRequest {
                        voters: voters.iter().copied().collect(),
                    };
                    tokio::time::timeout(wait, client.change_voters(req))
                        .await
                        .map(|r| r.map(|resp| (resp.into_inner().error, Out::Unit)))
                }
            }
        };
        let is_read = matches!(op, Op::ReadIndex);
        // A forward to a leader that has been replaced (partitioned, paused) would wait for
        // its timeout; give up as soon as another leader is known.
        let res = tokio::select! {
            res = call => res,
            _ = self.leader_moved_from(leader_id) => {
                return if is_write {
                    Err(forward_err(
                        "another node became leader while the write was in flight".into(),
                        true,
                    ))
                } else {
                    Ok(Attempt::NotLeader(None))
                };
            }
        };
        match res {
            Ok(Ok((None, out))) => Ok(Attempt::Done(out)),
            Ok(Ok((Some(e), _))) => peer_error_to_attempt(e, leader_id, addr, is_write),
            // The request never left: safe to look for the leader again.
            Ok(Err(status)) if is_connect_failure(&status) || is_read => {
                tracing::debug!(leader_id, addr, %status, op = op.name(), "forwarding failed, retrying");
                Ok(Attempt::NotLeader(None))
            }
            Ok(Err(status)) => Err(forward_err(
                format!("{}: {}", status.code(), status.message()),
                true,
            )),
            Err(_) if is_read => Ok(Attempt::NotLeader(None)),
            Err(_) => Err(forward_err("no answer in time".into(), true)),
        }
    }
}

type MembershipResult = Result<
    Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        openraft::errors::RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    >,
    tokio::time::error::Elapsed,
>;

/// Interpret the result of a local membership change.
fn membership_result(op: &Op, wait: Duration, res: MembershipResult) -> Result<Attempt, RaftError> {
    use openraft::errors::RaftError as ORaftError;
    match res {
        Ok(Ok(_)) => Ok(Attempt::Done(Out::Unit)),
        Ok(Err(ORaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => Ok(forward_hint(&f)),
        Ok(Err(ORaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            Err(RaftError::MembershipRejected(e.to_string()))
        }
        Ok(Err(ORaftError::APIError(e))) => Err(RaftError::OutcomeUnknown {
            reason: format!("{} failed: {e}", op.name()),
        }),
        Ok(Err(ORaftError::Fatal(e))) => Err(RaftError::Fatal(e.to_string())),
        Err(_) => Err(RaftError::OutcomeUnknown {
            reason: format!("{} not completed within {} ms", op.name(), ms(wait)),
        }),
    }
}

/// Interpret an error reported by the peer a request was forwarded to.
fn peer_error_to_attempt(
    e: pb::PeerError,
    leader_id: u64,
    addr: &str,
    is_write: bool,
) -> Result<Attempt, RaftError> {
    use pb::peer_error::Kind;
    let forward_err = |outcome_unknown: bool| RaftError::Forward {
        leader_id,
        addr: addr.to_string(),
        reason: e.message.clone(),
        outcome_unknown,
    };
    match Kind::try_from(e.kind).unwrap_or(Kind::Unspecified) {
        Kind::NotLeader => Ok(Attempt::NotLeader(e.leader_id.map(|id| {
            (
                id,
                (!e.leader_addr.is_empty()).then(|| e.leader_addr.clone()),
            )
        }))),
        Kind::OutcomeUnknown => Err(forward_err(true)),
        Kind::Fatal if is_write => Err(forward_err(true)),
        // A stopped peer did nothing for a read or was asked nothing yet: look again.
        Kind::Fatal => Ok(Attempt::NotLeader(None)),
        Kind::Rejected => Err(RaftError::MembershipRejected(e.message)),
        Kind::QuorumUnavailable => Err(RaftError::QuorumUnavailable(e.message)),
        Kind::Unspecified => Err(RaftError::Protocol(format!(
            "peer {leader_id} at {addr} returned an unknown error kind: {}",
            e.message
        ))),
    }
}

/// Encode the result of a locally run forwarded operation as a peer error (if any).
pub(crate) fn attempt_to_peer_error(res: &Result<Attempt, RaftError>) -> Option<pb::PeerError> {
    use pb::peer_error::Kind;
    let (kind, message, leader) = match res {
        Ok(Attempt::Done(_)) => return None,
        Ok(Attempt::NotLeader(hint)) => {
            (Kind::NotLeader, "not the leader".to_string(), hint.clone())
        }
        Err(e @ RaftError::OutcomeUnknown { .. }) => (Kind::OutcomeUnknown, e.to_string(), None),
        Err(e @ RaftError::MembershipRejected(_)) => (Kind::Rejected, e.to_string(), None),
        Err(e @ RaftError::QuorumUnavailable(_)) => (Kind::QuorumUnavailable, e.to_string(), None),
        Err(e) => (Kind::Fatal, e.to_string(), None),
    };
    Some(pb::PeerError {
        kind: kind as i32,
        message,
        leader_id: leader.as_ref().map(|l| l.0),
        leader_addr: leader.and_then(|l| l.1).unwrap_or_default(),
    })
}

/// Follower side of the lease protocol: every heartbeat interval, ask the leader this node
/// follows to renew its lease (one request at a time; a grant is dated from its send time).
/// Ends when the node shuts down or is dropped.
async fn renew_leases<A: App>(inner: Weak<Inner<A>>) {
    loop {
        let Some(node) = inner.upgrade() else {
            return;
        };
        if *node.stopped.borrow() {
            return;
        }
        let interval = Duration::from_millis(node.config.heartbeat_ms);
        let sent_at = Instant::now();
        let target = {
            let metrics_rx = node.raft.metrics();
            let m = metrics_rx.borrow_watched();
            let follows = matches!(m.state, ServerState::Follower | ServerState::Learner);
            m.current_leader
                .filter(|l| follows && *l != node.id)
                .and_then(|l| {
                    let addr = m.membership_config.membership().get_node(&l)?.addr.clone();
                    Some((l, m.current_term, addr))
                })
        };
        if let Some((leader, term, addr)) = target {
            let ttl = Duration::from_millis(node.config.election_timeout_min_ms);
            if let Ok(mut client) = node.clients.client(&addr) {
                let lease = Duration::from_millis(node.config.lease_ms);
                let applied = *node.shared.applied_tx.borrow();
                let holding = node
                    .leases
                    .grant_from(leader, term, applied)
                    .is_some_and(|g| g.sent_at.elapsed() < lease);
                let mut request = tonic::Request::new(pb::LeaseRequest {
                    node_id: node.id,
                    term,
                    holding,
                });
                request.set_timeout(ttl);
                if let Ok(Ok(resp)) = tokio::time::timeout(ttl, client.renew_lease(request)).await {
                    let resp = resp.into_inner();
                    if resp.granted {
                        node.leases.granted(Grant {
                            sent_at,
                            leader,
                            term,
                            log_index: resp.log_index,
                        });
                    }
                }
            }
        }
        drop(node);
        tokio::time::sleep_until((sent_at + interval).into()).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::Applied;

    struct Nop;

    impl App for Nop {
        fn apply(&mut self, _index: u64, _command: &[u8]) -> Applied {
            Applied::default()
        }
        fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            Vec::new()
        }
        fn restore(&mut self, _records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), String> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forward_transport_failures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = RaftConfig::new(1, dir.path().join("n1"), "127.0.0.1:1", BTreeMap::new());
        let node = RaftNode::start(cfg, Nop).await.expect("start");
        let write = Op::Write(b"set x 1".to_vec());

        // Nobody listens: the request never left, so the caller may look for a leader again.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dead = l.local_addr().expect("addr").to_string();
        drop(l);
        let res = node.run_remote(9, &dead, &write).await;
        assert!(
            matches!(res, Ok(Attempt::NotLeader(None))),
            "{:?}",
            res.err()
        );

        // The peer takes the request and then the connection breaks: outcome unknown.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut sock, _) = l.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut seen = 0;
            // HTTP/2 preface + SETTINGS + HEADERS + DATA of the forwarded command.
            while seen < 120 {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen += n,
                }
            }
            drop(sock);
        });
        let err = match node.run_remote(9, &addr, &write).await {
            Err(e) => e,
            Ok(_) => panic!("a broken connection must fail the write"),
        };
        assert!(err.outcome_unknown(), "{err}");
        assert!(!err.is_retry_safe(), "{err}");
        assert!(
            matches!(err, RaftError::Forward { leader_id: 9, .. }),
            "{err}"
        );

        node.shutdown().await.expect("shutdown");
    }
}
