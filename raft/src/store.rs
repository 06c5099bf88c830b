//! RocksDB storage: the Raft log + vote ([`LogStore`], [`LogReader`]) and the persistent state
//! machine with its snapshots ([`StateMachineStore`]).
//!
//! Column families:
//! - `logs`: log entries, key = big-endian index, value = serde_json of the openraft entry;
//! - `meta`: `vote`, `committed`, `last_purged` (serde_json);
//! - `sm_data`: the application's records, keys and values as the [`App`] gives them;
//! - `sm_meta`: `last_applied` and `last_membership` (serde_json);
//! - `snapshot`: `current`, the last built or installed snapshot (see [`encode_snapshot`]).
//!
//! Durability: appends are written to RocksDB at once (readable) and acknowledged by a syncer
//! thread after a WAL fsync that covers every append queued meanwhile (group commit: one fsync
//! per batch, not per entry). Votes, truncations, purges, applied batches and snapshot installs
//! are written with `sync = true` before returning.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;

use futures::Stream;
use futures::StreamExt;
use openraft::storage::EntryResponder;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftStateMachine;
use openraft::EntryPayload;
use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::RaftSnapshotBuilder;
use rocksdb::ColumnFamily;
use rocksdb::ColumnFamilyDescriptor;
use rocksdb::Direction;
use rocksdb::IteratorMode;
use rocksdb::Options;
use rocksdb::WriteBatch;
use rocksdb::WriteOptions;
use rocksdb::DB;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::types::Entry;
use crate::types::LogId;
use crate::types::Snapshot;
use crate::types::SnapshotMeta;
use crate::types::StoredMembership;
use crate::types::TypeConfig;
use crate::types::Vote;
use crate::App;

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const CF_SM_DATA: &str = "sm_data";
const CF_SM_META: &str = "sm_meta";
const CF_SNAPSHOT: &str = "snapshot";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_LAST_MEMBERSHIP: &[u8] = b"last_membership";
const KEY_SNAPSHOT: &[u8] = b"current";

const SNAPSHOT_MAGIC: &[u8; 8] = b"FRSNAP1\n";

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn cf<'a>(db: &'a DB, name: &str) -> io::Result<&'a ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| io_err(format!("RocksDB column family {name:?} is missing")))
}

fn sync_write_opts() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

fn to_json<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(io_err)
}

fn from_json<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    serde_json::from_slice(b).map_err(invalid)
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> io::Result<u64> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| invalid(format!("log key of {} bytes, expected 8", key.len())))?;
    Ok(u64::from_be_bytes(arr))
}

fn get_json<T: DeserializeOwned>(db: &DB, cf_name: &str, key: &[u8]) -> io::Result<Option<T>> {
    match db.get_cf(cf(db, cf_name)?, key).map_err(io_err)? {
        Some(v) => Ok(Some(from_json(&v)?)),
        None => Ok(None),
    }
}

/// Run blocking RocksDB work (sync writes) off the async worker threads.
async fn blocking<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(io_err)?
}

/// The database handle. RocksDB closes in `Drop`, on whichever thread drops the last handle;
/// a process that exits while that runs aborts ("terminate called without an active
/// exception"), so `Db` reports when the close has finished.
pub(crate) struct Db {
    db: Option<DB>,
    closed: mpsc::SyncSender<()>,
}

impl Db {
    /// Wraps an open database; `closed` receives a message once it is fully closed.
    pub(crate) fn new(db: DB) -> (Self, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::sync_channel(1);
        (
            Self {
                db: Some(db),
                closed: tx,
            },
            rx,
        )
    }
}

impl std::ops::Deref for Db {
    type Target = DB;
    fn deref(&self) -> &DB {
        // Only `drop` takes the database out.
        self.db.as_ref().expect("database is open until dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        drop(self.db.take());
        let _ = self.closed.send(());
    }
}

/// Open (or create) the RocksDB database with all column families.
pub(crate) fn open_db(path: &Path) -> Result<DB, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::None);
    let cfs = [CF_LOGS, CF_META, CF_SM_DATA, CF_SM_META, CF_SNAPSHOT].map(|name| {
        let mut o = Options::default();
        o.set_compression_type(rocksdb::DBCompressionType::None);
        ColumnFamilyDescriptor::new(name, o)
    });
    DB::open_cf_descriptors(&opts, path, cfs)
}

/// Key/value records of the application state.
pub(crate) type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// The persisted state machine as found at startup.
pub(crate) struct PersistedState {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Read the state machine's records and meta.
pub(crate) fn read_persisted_state(db: &DB) -> io::Result<PersistedState> {
    let last_applied = get_json::<LogId>(db, CF_SM_META, KEY_LAST_APPLIED)?;
    let last_membership =
        get_json::<StoredMembership>(db, CF_SM_META, KEY_LAST_MEMBERSHIP)?.unwrap_or_default();
    let mut records = Vec::new();
    for item in db.iterator_cf(cf(db, CF_SM_DATA)?, IteratorMode::Start) {
        let (k, v) = item.map_err(io_err)?;
        records.push((k.to_vec(), v.to_vec()));
    }
    Ok(PersistedState {
        last_applied,
        last_membership,
        records,
    })
}

// ---------------------------------------------------------------------------------------------
// Log storage
// ---------------------------------------------------------------------------------------------

/// Raft log and vote storage.
pub(crate) struct LogStore {
    db: Arc<Db>,
    /// Callbacks waiting for the WAL fsync that covers their append.
    syncer: mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl LogStore {
    /// Create the log store and start its syncer thread. The thread exits when the store is
    /// dropped.
    pub(crate) fn new(db: Arc<Db>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let sync_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let res = sync_db.flush_wal(true);
                    if let Err(e) = &res {
                        tracing::error!(error = %e, "fsync of the raft log failed");
                    }
                    for cb in waiting {
                        cb.io_completed(res.clone().map_err(io_err));
                    }
                }
            })?;
        Ok(Self { db, syncer: tx })
    }

    fn last_purged(&self) -> io::Result<Option<LogId>> {
        get_json(&self.db, CF_META, KEY_LAST_PURGED)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id = self.last_purged()?;
        let mut it = self
            .db
            .iterator_cf(cf(&self.db, CF_LOGS)?, IteratorMode::End);
        let last = match it.next() {
            Some(item) => {
                let (_, v) = item.map_err(io_err)?;
                let entry: Entry = from_json(&v)?;
                Some(entry.log_id)
            }
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            db: self.db.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let value = to_json(vote)?;
        let db = self.db.clone();
        blocking(move || {
            db.put_cf_opt(cf(&db, CF_META)?, KEY_VOTE, value, &sync_write_opts())
                .map_err(io_err)
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not synced: it only speeds up recovery; the next synced write carries it to disk.
        let value = to_json(&committed)?;
        self.db
            .put_cf(cf(&self.db, CF_META)?, KEY_COMMITTED, value)
            .map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(get_json::<Option<LogId>>(&self.db, CF_META, KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let logs = cf(&self.db, CF_LOGS)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(logs, index_key(entry.log_id.index), to_json(&entry)?);
        }
        // Written (and readable) now; durable once the syncer's fsync completes.
        self.db.write(batch).map_err(io_err)?;
        self.syncer
            .send(callback)
            .map_err(|_| io_err("raft log syncer thread has stopped"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index + 1).unwrap_or(0);
        let db = self.db.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            let logs = cf(&db, CF_LOGS)?;
            batch.delete_range_cf(logs, index_key(from), index_key(u64::MAX));
            batch.delete_cf(logs, index_key(u64::MAX));
            db.write_opt(batch, &sync_write_opts()).map_err(io_err)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let value = to_json(&log_id)?;
        let db = self.db.clone();
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(cf(&db, CF_META)?, KEY_LAST_PURGED, value);
            batch.delete_range_cf(
                cf(&db, CF_LOGS)?,
                index_key(0),
                index_key(log_id.index.saturating_add(1)),
            );
            db.write_opt(batch, &sync_write_opts()).map_err(io_err)
        })
        .await
    }
}

/// Reads log entries and the vote; used by openraft's replication tasks.
pub(crate) struct LogReader {
    db: Arc<Db>,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&x) => x,
            Bound::Excluded(&x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let key = index_key(start);
        let it = self.db.iterator_cf(
            cf(&self.db, CF_LOGS)?,
            IteratorMode::From(&key, Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(io_err)?;
            let index = key_index(&k)?;
            if !range.contains(&index) {
                break;
            }
            out.push(from_json(&v)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        get_json(&self.db, CF_META, KEY_VOTE)
    }
}

// ---------------------------------------------------------------------------------------------
// State machine
// ---------------------------------------------------------------------------------------------

/// State shared between the state machine (owned by openraft) and the [`RaftNode`](crate::RaftNode).
pub(crate) struct SmShared<A> {
    /// The application state, updated as entries are applied.
    pub app: RwLock<A>,
    /// Index of the last applied (and persisted) log entry.
    pub applied_tx: watch::Sender<u64>,
    /// Serializes writes of the snapshot blob.
    snapshot_lock: Mutex<()>,
}

impl<A> SmShared<A> {
    pub(crate) fn new(app: A, last_applied: u64) -> Self {
        Self {
            app: RwLock::new(app),
            applied_tx: watch::channel(last_applied).0,
            snapshot_lock: Mutex::new(()),
        }
    }
}

/// Lock the app for writing, recovering from a poisoned lock (an `App` method panicked): the
/// state machine must go on, the panic itself is reported where it happened.
pub(crate) fn write_app<A>(shared: &SmShared<A>) -> std::sync::RwLockWriteGuard<'_, A> {
    shared.app.write().unwrap_or_else(|p| p.into_inner())
}

/// Lock the app for reading (see [`write_app`]).
pub(crate) fn read_app<A>(shared: &SmShared<A>) -> std::sync::RwLockReadGuard<'_, A> {
    shared.app.read().unwrap_or_else(|p| p.into_inner())
}

/// The replicated state machine: applies entries to the [`App`] and persists its changes.
pub(crate) struct StateMachineStore<A: App> {
    db: Arc<Db>,
    shared: Arc<SmShared<A>>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

impl<A: App> StateMachineStore<A> {
    pub(crate) fn new(
        db: Arc<Db>,
        shared: Arc<SmShared<A>>,
        last_applied: Option<LogId>,
        last_membership: StoredMembership,
    ) -> Self {
        Self {
            db,
            shared,
            last_applied,
            last_membership,
        }
    }

    fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
        }
    }
}

impl<A: App> RaftStateMachine<TypeConfig> for StateMachineStore<A> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut changes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut responders = Vec::new();
        let mut membership_changed = false;
        let mut any = false;

        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            any = true;
            let log_id = entry.log_id;
            let response = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(cmd) => {
                    let applied = write_app(&self.shared).apply(log_id.index, &cmd.0);
                    for (k, v) in applied.changes {
                        changes.insert(k, v);
                    }
                    applied.response
                }
                EntryPayload::Membership(m) => {
                    self.last_membership = StoredMembership::new(Some(log_id), m);
                    membership_changed = true;
                    Vec::new()
                }
            };
            self.last_applied = Some(log_id);
            if let Some(r) = responder {
                responders.push((r, response));
            }
        }
        if !any {
            return Ok(());
        }

        // One synced WriteBatch for the whole batch: records, last applied, membership.
        let mut batch = WriteBatch::default();
        let data = cf(&self.db, CF_SM_DATA)?;
        for (k, v) in changes {
            match v {
                Some(v) => batch.put_cf(data, k, v),
                None => batch.delete_cf(data, k),
            }
        }
        let meta = cf(&self.db, CF_SM_META)?;
        batch.put_cf(meta, KEY_LAST_APPLIED, to_json(&self.last_applied)?);
        if membership_changed {
            batch.put_cf(meta, KEY_LAST_MEMBERSHIP, to_json(&self.last_membership)?);
        }
        let db = self.db.clone();
        blocking(move || db.write_opt(batch, &sync_write_opts()).map_err(io_err)).await?;

        let index = self.last_applied.as_ref().map(|l| l.index).unwrap_or(0);
        self.shared.applied_tx.send_replace(index);
        for (r, response) in responders {
            r.send(response);
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        Some(self.get_snapshot_builder().await)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Captured here, serialized with `apply`, so records and meta are consistent.
        let records = read_app(&self.shared).records();
        SnapshotBuilder {
            db: self.db.clone(),
            lock: self.shared.clone(),
            meta: self.meta(),
            records,
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let (_, records) = decode_snapshot(&snapshot)?;
        let db = self.db.clone();
        let meta_c = meta.clone();
        let records_c = records.clone();
        let lock = self.shared.clone();
        blocking(move || {
            let _g = lock.snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut batch = WriteBatch::default();
            let data = cf(&db, CF_SM_DATA)?;
            for item in db.iterator_cf(data, IteratorMode::Start) {
                let (k, _) = item.map_err(io_err)?;
                batch.delete_cf(data, k);
            }
            for (k, v) in &records_c {
                batch.put_cf(data, k, v);
            }
            let sm_meta = cf(&db, CF_SM_META)?;
            batch.put_cf(sm_meta, KEY_LAST_APPLIED, to_json(&meta_c.last_log_id)?);
            batch.put_cf(
                sm_meta,
                KEY_LAST_MEMBERSHIP,
                to_json(&meta_c.last_membership)?,
            );
            batch.put_cf(cf(&db, CF_SNAPSHOT)?, KEY_SNAPSHOT, &snapshot);
            db.write_opt(batch, &sync_write_opts()).map_err(io_err)
        })
        .await?;

        write_app(&self.shared).restore(records).map_err(|e| {
            io_err(format!(
                "the application refused the installed snapshot: {e}"
            ))
        })?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        let index = self.last_applied.as_ref().map(|l| l.index).unwrap_or(0);
        self.shared.applied_tx.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let Some(blob) = self
            .db
            .get_cf(cf(&self.db, CF_SNAPSHOT)?, KEY_SNAPSHOT)
            .map_err(io_err)?
        else {
            return Ok(None);
        };
        let meta = decode_snapshot_meta(&blob)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: blob,
        }))
    }
}

/// Builds a snapshot from state captured by [`StateMachineStore::get_snapshot_builder`].
pub(crate) struct SnapshotBuilder {
    db: Arc<Db>,
    lock: Arc<dyn SnapshotLock>,
    meta: SnapshotMeta,
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Type-erased access to the snapshot write lock (keeps [`SnapshotBuilder`] non-generic).
trait SnapshotLock: Send + Sync + 'static {
    fn snapshot_lock(&self) -> &Mutex<()>;
}

impl<A: Send + Sync + 'static> SnapshotLock for SmShared<A> {
    fn snapshot_lock(&self) -> &Mutex<()> {
        &self.snapshot_lock
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let blob = encode_snapshot(&self.meta, &self.records)?;
        let db = self.db.clone();
        let lock = self.lock.clone();
        let meta = self.meta.clone();
        let stored = blob.clone();
        blocking(move || {
            let _g = lock
                .snapshot_lock()
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let snap_cf = cf(&db, CF_SNAPSHOT)?;
            // Keep a newer snapshot installed meanwhile.
            if let Some(existing) = db.get_cf(snap_cf, KEY_SNAPSHOT).map_err(io_err)? {
                let existing = decode_snapshot_meta(&existing)?;
                if existing.last_log_id >= meta.last_log_id {
                    return Ok(());
                }
            }
            db.put_cf_opt(snap_cf, KEY_SNAPSHOT, stored, &sync_write_opts())
                .map_err(io_err)
        })
        .await?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: blob,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshot format
// ---------------------------------------------------------------------------------------------

/// Encode a snapshot: magic `FRSNAP1\n`, u32 BE length + serde_json of the [`SnapshotMeta`],
/// u64 BE record count, then per record u32 BE key length, key, u32 BE value length, value.
pub(crate) fn encode_snapshot(
    meta: &SnapshotMeta,
    records: &[(Vec<u8>, Vec<u8>)],
) -> io::Result<Vec<u8>> {
    let meta_json = to_json(meta)?;
    let size: usize = records.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(8 + 4 + meta_json.len() + 8 + size);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    push_len(&mut out, meta_json.len())?;
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(&(records.len() as u64).to_be_bytes());
    for (k, v) in records {
        push_len(&mut out, k.len())?;
        out.extend_from_slice(k);
        push_len(&mut out, v.len())?;
        out.extend_from_slice(v);
    }
    Ok(out)
}

fn push_len(out: &mut Vec<u8>, len: usize) -> io::Result<()> {
    let len = u32::try_from(len).map_err(|_| invalid("snapshot item larger than 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(invalid("truncated snapshot"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u32(&mut self) -> io::Result<usize> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(invalid)?;
        Ok(u32::from_be_bytes(b) as usize)
    }

    fn u64(&mut self) -> io::Result<u64> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(invalid)?;
        Ok(u64::from_be_bytes(b))
    }
}

fn read_header<'a>(blob: &'a [u8]) -> io::Result<(SnapshotMeta, Cursor<'a>)> {
    let mut c = Cursor { buf: blob };
    if c.take(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC {
        return Err(invalid("not a Fulcrum snapshot (bad magic)"));
    }
    let n = c.u32()?;
    let meta = from_json(c.take(n)?)?;
    Ok((meta, c))
}

/// Decode only the meta of an encoded snapshot.
pub(crate) fn decode_snapshot_meta(blob: &[u8]) -> io::Result<SnapshotMeta> {
    Ok(read_header(blob)?.0)
}

/// Decode an encoded snapshot.
pub(crate) fn decode_snapshot(blob: &[u8]) -> io::Result<(SnapshotMeta, Records)> {
    let (meta, mut c) = read_header(blob)?;
    let count = c.u64()?;
    let mut records = Vec::new();
    for _ in 0..count {
        let kl = c.u32()?;
        let k = c.take(kl)?.to_vec();
        let vl = c.u32()?;
        let v = c.take(vl)?.to_vec();
        records.push((k, v));
    }
    if !c.buf.is_empty() {
        return Err(invalid("trailing bytes after snapshot records"));
    }
    Ok((meta, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_roundtrip_and_corruption() {
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(
                openraft::impls::leader_id_adv::LeaderId {
                    term: 3,
                    node_id: 1,
                },
                42,
            )),
            last_membership: StoredMembership::default(),
        };
        let records = vec![(b"a".to_vec(), b"1".to_vec()), (b"bb".to_vec(), Vec::new())];
        let blob = encode_snapshot(&meta, &records).expect("encode");
        let (m, r) = decode_snapshot(&blob).expect("decode");
        assert_eq!(m, meta);
        assert_eq!(r, records);
        assert_eq!(decode_snapshot_meta(&blob).expect("meta"), meta);
        assert!(decode_snapshot(&blob[..blob.len() - 1]).is_err());
        assert!(decode_snapshot(b"garbage").is_err());
        let mut longer = blob.clone();
        longer.push(0);
        assert!(decode_snapshot(&longer).is_err());
    }
}
