//! Streaming ingest (PutRecord): records are acknowledged once durable in a
//! write-ahead log, visible online at once, and committed to Iceberg in the
//! background.
//!
//! ```text
//!  append(batch) ─► conform ─► WAL (fsync, group commit) ─► ack { lsn }
//!                                   │                        └► online store
//!                                   ▼
//!                         pending (lsn → batch) ──committer──► Iceberg snapshot
//!                                                               summary: pitlake.wal.first-lsn,
//!                                                                        pitlake.wal.last-lsn
//! ```
//!
//! Exactly once across crashes: a commit records the last log record it
//! covers in its snapshot summary, atomically with the data. On restart the
//! log is replayed from after the highest such record in the table's history,
//! so a record is either in a committed snapshot or replayed, never both.
//! Segments wholly committed are deleted after the commit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tokio::sync::Notify;

use super::conform::{Target, by_name, conform};
use super::wal::{Encoded, Wal, WalOptions};
use super::writer::{target_of, write_snapshot};
use crate::catalog::{TableName, Warehouse};
use crate::error::{Error, Result};
use crate::online::{OnlineStore, PendingRecords};
use crate::shared::warehouse_path;
use crate::storage::{WAL_FIRST_LSN, WAL_LAST_LSN, committed_lsn, with_schema_of};

/// Folder of the write-ahead logs, inside the warehouse.
pub const STREAMS_DIR: &str = "_streams";

/// When the committer writes logged records to Iceberg.
#[derive(Debug, Clone)]
pub struct CommitPolicy {
    /// Commit once the oldest uncommitted record is this old.
    pub interval: Duration,
    /// Commit as soon as this many rows are waiting.
    pub rows: usize,
    /// Appends wait (backpressure) while this many rows are uncommitted.
    pub max_pending_rows: usize,
    /// How long an append waits for room before it fails.
    pub max_wait: Duration,
    /// After this many commits the committer compacts the table (its small
    /// files and its manifests; see `compact.rs`); 0: never.
    pub compact_every: u64,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            interval: Duration::from_secs(2),
            rows: 500_000,
            max_pending_rows: 10_000_000,
            max_wait: Duration::from_secs(60),
            compact_every: 100,
        }
    }
}

/// A record queued in a log, not yet known to be durable.
pub struct Queued {
    stream: Arc<Stream>,
    batch: RecordBatch,
    durable: futures::future::BoxFuture<'static, Result<u64>>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("table", &self.stream.name)
            .field("rows", &self.batch.num_rows())
            .finish()
    }
}

impl Queued {
    /// Waits until the record is fsync'd.
    pub async fn durable(self) -> Result<Durable> {
        let lsn = self.durable.await?;
        Ok(Durable {
            stream: self.stream,
            batch: self.batch,
            lsn,
        })
    }
}

/// A record validated and encoded for its stream's log, not queued yet.
#[derive(Debug)]
pub struct Prepared {
    stream: Arc<Stream>,
    batch: RecordBatch,
    /// `None` for a record without rows: nothing is logged.
    record: Option<Encoded>,
}

impl Prepared {
    /// Encodes a conformed batch for its stream's log.
    fn new(stream: Arc<Stream>, batch: RecordBatch) -> Result<Self> {
        let record = match batch.num_rows() {
            0 => None,
            _ => Some(stream.wal.encode(&batch)?),
        };
        Ok(Prepared {
            stream,
            batch,
            record,
        })
    }
}

/// A record durable in its log, to be acknowledged.
#[derive(Debug)]
pub struct Durable {
    stream: Arc<Stream>,
    batch: RecordBatch,
    lsn: u64,
}

/// What an append got: its log record and rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub lsn: u64,
    pub rows: u64,
}

/// The streams of one warehouse: a log and a committer per table written to.
#[derive(Debug)]
pub struct Streams {
    warehouse: Warehouse,
    /// Applies each record at its acknowledgement, and each commit.
    online: Arc<OnlineStore>,
    tables: Mutex<HashMap<String, Arc<Stream>>>,
    /// One log opened at a time.
    opening: tokio::sync::Mutex<()>,
    policy: Mutex<CommitPolicy>,
}

/// The schema id and properties (entity key, event time) a target is of.
type TargetOf = (i32, HashMap<String, String>);

/// The stream into one table.
#[derive(Debug)]
struct Stream {
    name: TableName,
    /// What appends are checked against: the table's columns as this
    /// process last saw them, with the schema id and properties they are
    /// of (see [`Streams::retarget`]).
    target: std::sync::RwLock<(TargetOf, Arc<Target>)>,
    wal: Wal,
    pending: Mutex<Pending>,
    /// Wakes the committer (enough rows, or a flush).
    wake: Notify,
    /// Wakes appenders waiting for room, and flushers.
    committed: Notify,
    stats: Counters,
    /// Commits since the committer last compacted the table.
    since_compaction: AtomicU64,
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct Pending {
    records: BTreeMap<u64, RecordBatch>,
    rows: usize,
    /// When the oldest uncommitted record was acknowledged.
    oldest: Option<Instant>,
    committed_lsn: u64,
    last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    acks: AtomicU64,
    rows: AtomicU64,
    commits: AtomicU64,
    committed_rows: AtomicU64,
    last_commit_micros: AtomicU64,
}

impl PendingRecords for Streams {
    fn pending(&self, table: &str, after: u64) -> Vec<(u64, RecordBatch)> {
        Streams::pending(self, table, after)
    }
}

impl Streams {
    /// The streams into `warehouse`'s tables, whose records `online` sees
    /// from their acknowledgement (it reads the pending ones from here).
    pub fn new(warehouse: Warehouse, online: Arc<OnlineStore>) -> Arc<Self> {
        let streams = Arc::new(Streams {
            warehouse,
            online,
            tables: Mutex::default(),
            opening: tokio::sync::Mutex::default(),
            policy: Mutex::default(),
        });
        let pending: Arc<dyn PendingRecords> = streams.clone();
        streams.online.attach(Arc::downgrade(&pending));
        streams
    }

    /// Sets the commit policy for streams opened from now on.
    pub fn set_policy(&self, policy: CommitPolicy) {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    fn policy(&self) -> CommitPolicy {
        self.policy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Appends a batch (columns matched by name, validated like INSERT) to
    /// `name`'s stream; returns once it is durable in the log.
    pub async fn append(&self, name: &TableName, batch: &RecordBatch) -> Result<Ack> {
        let prepared = self.prepare(name, vec![batch.clone()]).await?;
        acknowledged(self.queue(prepared).await?).await
    }

    /// [`Self::append`] for a batch whose columns are the table's, in order
    /// (INSERT ... VALUES).
    pub async fn append_in_table_order(
        &self,
        name: &TableName,
        batch: &RecordBatch,
    ) -> Result<Ack> {
        let stream = self.open(name).await?;
        self.retarget_stream(&stream).await?;
        let batch = conform(&stream.target(), batch, 1)?;
        let queued = self.queue(Prepared::new(stream, batch)?).await?;
        acknowledged(queued).await
    }

    /// Queues a record in its log; the task returned acknowledges it (pending
    /// for the committer, visible online) once it is durable, whether or not
    /// anyone still waits for it: a durable record never acknowledged (its
    /// client gone, its request dropped) left a gap the committer stopped at,
    /// so no later record reached Iceberg until a restart.
    pub async fn queue(&self, prepared: Prepared) -> Result<tokio::task::JoinHandle<Result<Ack>>> {
        let queued = self.queue_prepared(prepared).await?;
        let online = self.online.clone();
        let commit_rows = self.policy().rows;
        Ok(tokio::spawn(async move {
            let durable = queued.durable().await?;
            acknowledge(&online, commit_rows, durable)
        }))
    }

    /// Validates batches of one schema (columns matched by name, like INSERT)
    /// as one record of `name`'s stream and encodes it for the log, on a
    /// blocking thread: this is the CPU work of an append, so records of one
    /// stream can be prepared in parallel, then queued in order with
    /// [`Self::queue`], which acknowledges each once durable. Row numbers in
    /// errors count from the first batch.
    pub async fn prepare(&self, name: &TableName, batches: Vec<RecordBatch>) -> Result<Prepared> {
        let stream = self.open(name).await?;
        self.retarget_stream(&stream).await?;
        self.prepare_for(stream, batches).await
    }

    async fn prepare_for(
        &self,
        stream: Arc<Stream>,
        batches: Vec<RecordBatch>,
    ) -> Result<Prepared> {
        let name = stream.name.clone();
        tokio::task::spawn_blocking(move || {
            let batch = match batches.as_slice() {
                [one] => one.clone(),
                _ => {
                    let schema = batches
                        .first()
                        .map(RecordBatch::schema)
                        .unwrap_or_else(|| stream.target().schema.clone());
                    arrow::compute::concat_batches(&schema, &batches)
                        .map_err(Error::arrow(format!("stream into {}", stream.name)))?
                }
            };
            let what = "streamed record".to_string();
            let target = stream.target();
            let batch = conform(&target, &by_name(&target, &batch, &what)?, 1)?;
            Prepared::new(stream, batch)
        })
        .await
        .map_err(|e| Error::Internal(format!("stream into {name}: preparing a record: {e}")))?
    }

    /// Queues a prepared record in its log (after waiting for room, if the
    /// committer is behind) without waiting for it to be durable.
    async fn queue_prepared(&self, prepared: Prepared) -> Result<Queued> {
        let Prepared {
            stream,
            batch,
            record,
        } = prepared;
        let Some(record) = record else {
            let lsn = stream.wal.last_lsn();
            return Ok(Queued {
                stream,
                batch,
                durable: Box::pin(async move { Ok(lsn) }),
            });
        };
        stream.wait_for_room(&self.policy()).await?;
        let durable = Box::pin(stream.wal.submit_encoded(record)?);
        Ok(Queued {
            stream,
            batch,
            durable,
        })
    }

    /// Records acknowledged but not yet committed, with log position above
    /// `after`, in log order (for readers of the table's current state).
    pub fn pending(&self, name: &str, after: u64) -> Vec<(u64, RecordBatch)> {
        let stream = self.tables().get(name).cloned();
        stream.map(|s| s.pending_after(after)).unwrap_or_default()
    }

    /// [`Self::pending`] for a table as loaded: the rows its snapshot lacks,
    /// with its current columns (records logged before a change of them
    /// are matched to them by field id).
    pub fn pending_for(
        &self,
        name: &str,
        table: &iceberg::table::Table,
    ) -> Result<Vec<RecordBatch>> {
        let Some(stream) = self.tables().get(name).cloned() else {
            return Ok(Vec::new());
        };
        if stream.lock().records.is_empty() {
            return Ok(Vec::new());
        }
        let schema = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
                .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?,
        );
        stream
            .pending_after(committed_lsn(table))
            .into_iter()
            .map(|(_, batch)| with_schema_of(&batch, &schema))
            .collect()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stream>>> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits everything acknowledged so far in `name` (all tables if
    /// `None`) and waits for it.
    pub async fn flush(&self, name: Option<&str>) -> Result<()> {
        let streams: Vec<Arc<Stream>> = {
            let tables = self.tables();
            tables
                .iter()
                .filter(|(n, _)| name.is_none_or(|want| want == n.as_str()))
                .map(|(_, s)| s.clone())
                .collect()
        };
        for stream in streams {
            stream.flush().await?;
        }
        Ok(())
    }

    /// Commits everything acknowledged in `name` and, with `purge`, deletes
    /// every log segment it was in, the one being written included: after
    /// an ERASE no record of the log may still hold erased values. A log
    /// left on disk is opened (and its records committed) first; one
    /// another process owns is an error naming it: its records are out of
    /// reach of the DELETE or ERASE that must see them.
    pub async fn settle(&self, name: &TableName, purge: bool) -> Result<()> {
        let open = self.tables().get(&name.to_string()).cloned();
        let stream = match open {
            Some(stream) => stream,
            None if log_dir(self.warehouse.root(), name)?.is_dir() => match self.open(name).await {
                Ok(stream) => stream,
                Err(Error::Locked { .. }) => {
                    return Err(Error::Locked {
                        what: format!(
                            "the stream log of {name} (its acknowledged records must be \
                                 removed too: run the statement through the server that owns it)"
                        ),
                    });
                }
                Err(e) => return Err(e),
            },
            None => return Ok(()),
        };
        stream.flush().await?;
        if !purge {
            return Ok(());
        }
        let committed = stream.lock().committed_lsn;
        stream.wal.purge_through(committed).await
    }

    /// Checks appends to `name`'s stream against the table's columns as
    /// they are now (after a change of its columns).
    pub async fn retarget(&self, name: &TableName) -> Result<()> {
        let open = self.tables().get(&name.to_string()).cloned();
        if let Some(stream) = open {
            self.retarget_stream(&stream).await?;
        }
        Ok(())
    }

    /// Checks the table of `stream` (as cached until the catalog changes):
    /// when its columns changed since the stream last saw them, by this
    /// process or another, appends are checked against the new ones. Before
    /// every append: a record conformed to columns since dropped would lose
    /// its values at commit.
    async fn retarget_stream(&self, stream: &Stream) -> Result<()> {
        let table = self
            .warehouse
            .load_table(&stream.name.schema, &stream.name.table)
            .await?;
        let metadata = table.metadata();
        let same = |(id, properties): &TargetOf| {
            *id == metadata.current_schema_id() && properties == metadata.properties()
        };
        // Every append passes here: a read lock, and no copy, when nothing changed.
        if same(&stream.target.read().unwrap_or_else(|e| e.into_inner()).0) {
            return Ok(());
        }
        let target = Arc::new(target_of(&stream.name.to_string(), &table)?);
        let seen = (metadata.current_schema_id(), metadata.properties().clone());
        *stream.target.write().unwrap_or_else(|e| e.into_inner()) = (seen, target);
        Ok(())
    }

    /// Forgets the stream of a dropped table and deletes its log: its
    /// records have nowhere to go.
    pub fn drop_table(&self, name: &TableName) {
        if let Some(stream) = self.tables().remove(&name.to_string()) {
            stream.closed.store(true, Ordering::SeqCst);
            stream.lock().records.clear();
            stream.wake.notify_one();
        }
        // Only a folder pitlake made for a checked name: never a path a
        // crafted name points elsewhere.
        if let Ok(dir) = log_dir(self.warehouse.root(), name) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Commits what is logged and stops the committers (graceful shutdown).
    pub async fn close(&self) -> Result<()> {
        self.flush(None).await?;
        let streams: Vec<Arc<Stream>> = self.tables().values().cloned().collect();
        for stream in streams {
            stream.closed.store(true, Ordering::SeqCst);
            stream.wake.notify_one();
        }
        Ok(())
    }

    /// Opens every log left in the warehouse (by a crash, or a stop before
    /// its commit), so its records are committed; returns the tables that
    /// had records to commit. Logs owned by another running process are
    /// left to it.
    pub async fn recover(&self) -> Result<Vec<String>> {
        let dir = self.warehouse.root().join(STREAMS_DIR);
        let mut recovered = Vec::new();
        for (schema, table) in list_logs(&dir)? {
            let name = match TableName::new(schema, table) {
                Ok(name) => name,
                Err(e) => {
                    tracing::warn!("stream log folder skipped: {e}");
                    continue;
                }
            };
            match self.open(&name).await {
                Ok(stream) if !stream.lock().records.is_empty() => recovered.push(name.to_string()),
                Ok(_) => {}
                // Dropped meanwhile, or owned by a running server: not ours.
                Err(Error::TableNotFound { .. } | Error::Locked { .. }) => {}
                Err(e) => tracing::error!("stream log of {name} not recovered: {e}"),
            }
        }
        Ok(recovered)
    }

    /// `system.ingest_status`: one row per stream of this process.
    pub fn status(&self) -> Result<RecordBatch> {
        let tables = self.tables().clone();
        let mut names: Vec<&String> = tables.keys().collect();
        names.sort();
        let now = Instant::now();
        let wall = chrono::Utc::now();
        let mut table_names = Vec::new();
        let mut acks = Vec::new();
        let mut rows_acked = Vec::new();
        let mut commits = Vec::new();
        let mut rows_committed = Vec::new();
        let mut lag_rows = Vec::new();
        let mut oldest_ms = Vec::new();
        let mut oldest_at = Vec::new();
        let mut commit_ms = Vec::new();
        let mut committed_lsn = Vec::new();
        let mut last_lsn = Vec::new();
        let mut wal_bytes = Vec::new();
        let mut errors = Vec::new();
        for name in names {
            let s = &tables[name];
            let p = s.lock();
            table_names.push(name.clone());
            acks.push(s.stats.acks.load(Ordering::Relaxed));
            rows_acked.push(s.stats.rows.load(Ordering::Relaxed));
            commits.push(s.stats.commits.load(Ordering::Relaxed));
            rows_committed.push(s.stats.committed_rows.load(Ordering::Relaxed));
            lag_rows.push(p.rows as u64);
            let age = p.oldest.map(|o| now.duration_since(o));
            oldest_ms.push(age.map(|a| a.as_millis() as i64));
            oldest_at.push(age.and_then(|a| {
                chrono::Duration::from_std(a)
                    .ok()
                    .map(|d| (wall - d).timestamp_millis())
            }));
            let micros = s.stats.last_commit_micros.load(Ordering::Relaxed);
            commit_ms.push((micros > 0).then_some(micros as i64 / 1000));
            committed_lsn.push(p.committed_lsn);
            last_lsn.push(s.wal.last_lsn());
            wal_bytes.push(s.wal.disk_bytes());
            errors.push(p.last_error.clone());
        }
        let schema = Arc::new(ingest_status_schema());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(table_names)),
            Arc::new(UInt64Array::from(acks)),
            Arc::new(UInt64Array::from(rows_acked)),
            Arc::new(UInt64Array::from(commits)),
            Arc::new(UInt64Array::from(rows_committed)),
            Arc::new(UInt64Array::from(lag_rows)),
            Arc::new(Int64Array::from(oldest_ms)),
            Arc::new(TimestampMillisecondArray::from(oldest_at).with_timezone("UTC")),
            Arc::new(Int64Array::from(commit_ms)),
            Arc::new(UInt64Array::from(committed_lsn)),
            Arc::new(UInt64Array::from(last_lsn)),
            Arc::new(UInt64Array::from(wal_bytes)),
            Arc::new(StringArray::from(errors)),
        ];
        RecordBatch::try_new(schema, columns).map_err(Error::arrow("the streams' status"))
    }

    /// The stream of `name`, opening (and replaying) its log on first use.
    async fn open(&self, name: &TableName) -> Result<Arc<Stream>> {
        let key = name.to_string();
        if let Some(stream) = self.tables().get(&key) {
            return Ok(stream.clone());
        }
        let _one = self.opening.lock().await;
        if let Some(stream) = self.tables().get(&key) {
            return Ok(stream.clone());
        }
        let table = self.warehouse.load_table(&name.schema, &name.table).await?;
        let target = target_of(&key, &table)?;
        let committed = committed_lsn(&table);
        let dir = log_dir(self.warehouse.root(), name)?;
        // Opening reads (and may repair) the whole log: off the async threads.
        let (wal, replay) =
            tokio::task::spawn_blocking(move || Wal::open(&dir, committed, WalOptions::default()))
                .await
                .map_err(|e| Error::Internal(format!("opening the stream log of {key}: {e}")))??;
        let mut pending = Pending {
            committed_lsn: committed,
            ..Default::default()
        };
        for record in replay {
            pending.rows += record.batch.num_rows();
            pending.records.insert(record.lsn, record.batch);
        }
        if !pending.records.is_empty() {
            pending.oldest = Some(Instant::now());
        }
        let stream = Arc::new(Stream {
            name: name.clone(),
            target: std::sync::RwLock::new((
                (
                    table.metadata().current_schema_id(),
                    table.metadata().properties().clone(),
                ),
                Arc::new(target),
            )),
            wal,
            pending: Mutex::new(pending),
            wake: Notify::new(),
            committed: Notify::new(),
            stats: Counters::default(),
            since_compaction: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        self.tables().insert(key, stream.clone());
        tokio::spawn(commit_loop(
            Arc::downgrade(&stream),
            self.warehouse.clone(),
            Arc::downgrade(&self.online),
            self.policy(),
        ));
        Ok(stream)
    }
}

impl Stream {
    fn target(&self) -> Arc<Target> {
        self.target
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending_after(&self, after: u64) -> Vec<(u64, RecordBatch)> {
        self.lock()
            .records
            .range(after.saturating_add(1)..)
            .map(|(lsn, b)| (*lsn, b.clone()))
            .collect()
    }

    async fn wait_for_room(&self, policy: &CommitPolicy) -> Result<()> {
        let deadline = Instant::now() + policy.max_wait;
        loop {
            let notified = self.committed.notified();
            let (rows, error) = {
                let p = self.lock();
                (p.rows, p.last_error.clone())
            };
            if rows < policy.max_pending_rows {
                return Ok(());
            }
            self.wake.notify_one();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                // RESOURCE_EXHAUSTED over Flight: the client should back off.
                return Err(Error::ResourceExhausted(format!(
                    "stream into {} is {rows} rows behind its commits (limit {}); try again later{}",
                    self.name,
                    policy.max_pending_rows,
                    error
                        .map(|e| format!(" (last commit error: {e})"))
                        .unwrap_or_default()
                )));
            }
        }
    }

    async fn flush(&self) -> Result<()> {
        let target = self.wal.last_lsn();
        loop {
            let notified = self.committed.notified();
            let (committed, error, empty) = {
                let p = self.lock();
                (p.committed_lsn, p.last_error.clone(), p.records.is_empty())
            };
            if committed >= target || empty {
                return Ok(());
            }
            self.wake.notify_one();
            if tokio::time::timeout(Duration::from_secs(30), notified)
                .await
                .is_err()
            {
                return Err(Error::Unavailable {
                    context: format!("stream into {}", self.name),
                    source: format!(
                        "did not commit within 30 s{}",
                        error.map(|e| format!(": {e}")).unwrap_or_default()
                    )
                    .into(),
                });
            }
        }
    }

    /// The contiguous run of records after the last commit.
    fn next_commit(&self) -> Vec<(u64, RecordBatch)> {
        let p = self.lock();
        let first = p.committed_lsn + 1;
        // Stop at a gap: a lower record is still being written.
        p.records
            .range(first..)
            .zip(first..)
            .take_while(|((lsn, _), expected)| **lsn == *expected)
            .map(|((lsn, batch), _)| (*lsn, batch.clone()))
            .collect()
    }
}

/// Commits logged records by size or age, until the stream closes or the
/// streams are dropped (then the log stays for the next process).
async fn commit_loop(
    stream: std::sync::Weak<Stream>,
    warehouse: Warehouse,
    online: std::sync::Weak<OnlineStore>,
    policy: CommitPolicy,
) {
    loop {
        let Some(stream) = stream.upgrade() else {
            return;
        };
        let due = {
            let p = stream.lock();
            match p.oldest {
                None => None,
                Some(_) if p.rows >= policy.rows => Some(Duration::ZERO),
                Some(oldest) => Some(policy.interval.saturating_sub(oldest.elapsed())),
            }
        };
        let wait = due.unwrap_or(policy.interval);
        // Short waits: dropped streams end the loop (and free the log) soon.
        let woken =
            tokio::time::timeout(wait.min(Duration::from_millis(500)), stream.wake.notified())
                .await
                .is_ok();
        let Some(online) = online.upgrade() else {
            return;
        };
        let closing = stream.closed.load(Ordering::SeqCst);
        let due_now = {
            let p = stream.lock();
            p.rows >= policy.rows || p.oldest.is_some_and(|o| o.elapsed() >= policy.interval)
        };
        if !woken && !due_now && !closing {
            continue;
        }
        let run = stream.next_commit();
        if run.is_empty() {
            if closing {
                return;
            }
            continue;
        }
        // Woken (enough rows, a flush, shutdown) or due: commit what is there.
        match commit(&stream, &warehouse, &online, &run).await {
            Ok(()) => {
                let commits = stream.since_compaction.fetch_add(1, Ordering::Relaxed) + 1;
                if policy.compact_every > 0 && commits >= policy.compact_every {
                    stream.since_compaction.store(0, Ordering::Relaxed);
                    compact(&stream.name, &warehouse).await;
                }
            }
            Err(e) => {
                stream.lock().last_error = Some(e.to_string());
                stream.committed.notify_waiters();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Compacts a streamed table between commits, so a day of commits every
/// few seconds does not leave tens of thousands of files and manifests. A
/// failure (another writer removed a file meanwhile) waits for the next turn.
async fn compact(name: &TableName, warehouse: &Warehouse) {
    let label = name.to_string();
    let compacted = async {
        let table = warehouse.load_table(&name.schema, &name.table).await?;
        let options = super::compact::CompactOptions::of(&label, &table)?;
        super::compact::rewrite_data_files(warehouse, name, options).await
    }
    .await;
    match compacted {
        Ok(done) => tracing::debug!(
            table = %label,
            files = done.rewritten_files,
            "stream compacted"
        ),
        Err(e) => tracing::warn!("stream into {label}: compaction failed, tried again later: {e}"),
    }
}

/// Writes one run of records as one snapshot and forgets them.
async fn commit(
    stream: &Stream,
    warehouse: &Warehouse,
    online: &OnlineStore,
    run: &[(u64, RecordBatch)],
) -> Result<()> {
    let started = Instant::now();
    let name = stream.name.to_string();
    let (Some((first, _)), Some((last, _))) = (run.first(), run.last()) else {
        return Ok(());
    };
    let (first, last) = (*first, *last);
    let table = warehouse
        .load_table(&stream.name.schema, &stream.name.table)
        .await?;
    if committed_lsn(&table) >= last {
        // Committed before a crash between the commit and forgetting the run.
        forget(stream, last);
        return Ok(());
    }
    let properties = HashMap::from([
        ("pitlake.operation".to_string(), "stream".to_string()),
        (WAL_FIRST_LSN.to_string(), first.to_string()),
        (WAL_LAST_LSN.to_string(), last.to_string()),
    ]);
    // Records logged before a change of the table's columns, as they are now.
    let target = target_of(&name, &table)?;
    let batches: Vec<Result<RecordBatch>> = run
        .iter()
        .map(|(_, b)| with_schema_of(b, &target.schema))
        .collect();
    // Encoding Parquet is long CPU work between awaits: on a blocking thread
    // it cannot hold a runtime worker (and the DoPut streams waiting on it
    // for their acknowledgements) for the hundreds of milliseconds it takes.
    let warehouse = warehouse.clone();
    let runtime = tokio::runtime::Handle::current();
    let writing = stream.name.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        runtime.block_on(write_snapshot(
            &warehouse,
            &writing,
            &table,
            futures::stream::iter(batches),
            properties,
        ))
    })
    .await
    .map_err(|e| Error::Internal(format!("committing the stream into {name}: {e}")))??;
    stream
        .stats
        .last_commit_micros
        .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    stream.stats.commits.fetch_add(1, Ordering::Relaxed);
    stream
        .stats
        .committed_rows
        .fetch_add(outcome.rows, Ordering::Relaxed);
    forget(stream, last);
    if let Err(e) = stream.wal.truncate_through(last).await {
        tracing::warn!("stream log of {name}: cannot delete committed segments: {e}");
    }
    online.refresh(&name).await?;
    Ok(())
}

/// A durable record becomes pending for the committer and visible online.
fn acknowledge(online: &OnlineStore, commit_rows: usize, durable: Durable) -> Result<Ack> {
    let Durable { stream, batch, lsn } = durable;
    let rows = batch.num_rows();
    if rows == 0 {
        return Ok(Ack { lsn, rows: 0 });
    }
    {
        let mut pending = stream.lock();
        pending.records.insert(lsn, batch.clone());
        pending.rows += rows;
        pending.oldest.get_or_insert_with(Instant::now);
        if pending.rows >= commit_rows {
            stream.wake.notify_one();
        }
    }
    stream.stats.acks.fetch_add(1, Ordering::Relaxed);
    stream.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
    if let Some(group) = online.loaded(&stream.name.to_string()) {
        group.apply_streamed(lsn, &batch)?;
    }
    Ok(Ack {
        lsn,
        rows: rows as u64,
    })
}

/// The acknowledgement of a record queued with [`Streams::queue`].
pub async fn acknowledged(task: tokio::task::JoinHandle<Result<Ack>>) -> Result<Ack> {
    task.await
        .map_err(|e| Error::Internal(format!("acknowledging a streamed record: {e}")))?
}

/// Drops the records through `through`: they are in a committed snapshot.
fn forget(stream: &Stream, through: u64) {
    let mut p = stream.lock();
    let keep = p.records.split_off(&(through + 1));
    p.records = keep;
    p.rows = p.records.values().map(RecordBatch::num_rows).sum();
    p.committed_lsn = p.committed_lsn.max(through);
    p.last_error = None;
    if p.records.is_empty() {
        p.oldest = None;
    } else {
        p.oldest = Some(Instant::now());
    }
    drop(p);
    stream.committed.notify_waiters();
}

/// The schema of `system.ingest_status`.
pub fn ingest_status_schema() -> Schema {
    Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("acks", DataType::UInt64, false),
        Field::new("rows_acked", DataType::UInt64, false),
        Field::new("commits", DataType::UInt64, false),
        Field::new("rows_committed", DataType::UInt64, false),
        Field::new("lag_rows", DataType::UInt64, false),
        Field::new("oldest_uncommitted_ms", DataType::Int64, true),
        Field::new(
            "oldest_uncommitted_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("last_commit_ms", DataType::Int64, true),
        Field::new("committed_lsn", DataType::UInt64, false),
        Field::new("last_lsn", DataType::UInt64, false),
        Field::new("wal_bytes", DataType::UInt64, false),
        Field::new("last_error", DataType::Utf8, true),
    ])
}

/// Where the log of a table lives.
pub fn log_dir(root: &Path, name: &TableName) -> Result<PathBuf> {
    warehouse_path(root, &[STREAMS_DIR, &name.schema, &name.table])
}

/// `(schema, table)` of every log folder.
fn list_logs(dir: &Path) -> Result<Vec<(String, String)>> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut logs = Vec::new();
    if !dir.is_dir() {
        return Ok(logs);
    }
    for schema in std::fs::read_dir(dir).map_err(io)? {
        let schema = schema.map_err(io)?;
        if !schema.path().is_dir() {
            continue;
        }
        for table in std::fs::read_dir(schema.path()).map_err(io)? {
            let table = table.map_err(io)?;
            if table.path().is_dir() {
                logs.push((
                    schema.file_name().to_string_lossy().into_owned(),
                    table.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
    }
    logs.sort();
    Ok(logs)
}
