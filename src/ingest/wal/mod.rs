//! Write-ahead log of Arrow record batches for one feature group.
//!
//! Streaming ingest acknowledges a record only once it is durable here; a
//! background committer later copies logged records into Iceberg and remembers
//! the highest LSN it committed. On restart the log is replayed from after that
//! LSN, and segments whose records are all committed are deleted.
//!
//! # Layout on disk
//!
//! ```text
//! dir/
//!   LOCK                        flock'ed by the one process that owns the log
//!   00000000000000000001.wal    segment: named by the LSN of its first record
//!   00000000000000000042.wal    segment: written last, the only one with a torn tail
//!
//! segment = magic, then records back to back:
//!
//!   +----------+-------------+-------------+-------------+---------------+--------
//!   | PLWAL001 | len: u32 LE | crc: u32 LE | lsn: u64 LE | payload       | len ...
//!   +----------+-------------+-------------+-------------+---------------+--------
//!     8 bytes    4 bytes       4 bytes       8 bytes       `len` bytes
//!
//!   crc     = crc32(lsn as 8 LE bytes ++ payload)
//!   payload = Arrow IPC stream of the batch: schema message, one batch, end marker
//! ```
//!
//! LSNs start at 1 and are consecutive inside a segment; the first record of a
//! segment has the LSN in the file name. Between segments LSNs only increase
//! (a reopen after the committed watermark `after` may skip some).
//!
//! # Crash safety
//!
//! * A record is acknowledged only after `sync_data` of its segment, so an
//!   acknowledged record survives a crash or power loss.
//! * A new segment file is created with `create_new`, then the directory is
//!   fsync'ed before any record in it is acknowledged, so its name is durable.
//!   The previous segment is fsync'ed before the new one is created, so only the
//!   newest segment can ever hold unsynced bytes.
//! * A crash can therefore only tear the tail of the newest segment. [`Wal::open`]
//!   cuts that tail off (`set_len` + fsync, before any new segment exists);
//!   damage anywhere else is reported, never silently skipped.
//! * [`Wal::open`] never appends after a possibly-torn tail: it always writes into
//!   a fresh segment named by the next LSN (created at the first append).
//!
//! One writer thread owns the files. Appenders encode their batch to IPC on their
//! own thread, queue it, and wait; the writer drains everything queued, writes it
//! with one vectored write, calls `sync_data` once and answers all of them (group
//! commit).

//!
//! # Files
//!
//! - `format`: the bytes of a record and a segment, checksums, decoding
//! - `writer`: the writer thread (append, group fsync, rotation, deletion)
//! - `recovery`: what open does with what a crash left on disk

mod format;
mod recovery;
#[cfg(test)]
mod testing;
mod writer;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use tokio::sync::oneshot;

pub use format::Encoded;
use format::encode_frame;
use recovery::recover;
use writer::{Append, Request, Writer};

use crate::error::{Error, Result};

/// Name of the file whose lock marks the owning process.
const LOCK_FILE: &str = "LOCK";
/// How long open waits for a lock that looks held (see `lock_dir`).
const LOCK_PATIENCE: Duration = Duration::from_millis(200);

/// Tuning; Default: segment_bytes = 64 MiB.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A new segment is started before writing a record once the current one
    /// holds at least this many bytes (and at least one record), so a segment can
    /// exceed it by one record.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One logged record.
#[derive(Debug, Clone)]
pub struct WalRecord {
    /// Log sequence number, unique and increasing within the log.
    pub lsn: u64,
    /// The batch as it was appended.
    pub batch: RecordBatch,
}

/// Handle to an open log; cheap to clone (Arc inside); Send + Sync.
///
/// Dropping the last handle stops the writer thread (after it has finished what
/// is queued) and releases the directory lock; that drop blocks for at most one
/// round of writes.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.dir)
            .field("last_lsn", &self.last_lsn())
            .field("disk_bytes", &self.disk_bytes())
            .finish()
    }
}

/// State shared by all handles; its drop shuts the writer down.
struct Inner {
    dir: PathBuf,
    requests: mpsc::Sender<Request>,
    stats: Arc<Stats>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No handle is left, so nothing can queue after this; the writer drains
        // what is queued, exits and closes the LOCK file, which releases the lock.
        // Joining makes the lock free by the time the drop returns.
        let _ = self.requests.send(Request::Shutdown);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Counters the writer updates and handles read without a round trip.
#[derive(Default)]
struct Stats {
    last_lsn: AtomicU64,
    disk_bytes: AtomicU64,
    syncs: AtomicU64,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, locks it exclusively for this process
    /// (a `LOCK` file locked with std's `File::try_lock`; if another process holds it, return
    /// Error::Invalid naming the directory and saying another pitlake process owns this log),
    /// scans the segments, cuts off a torn or corrupt tail of the LAST segment (a crash mid-write),
    /// and returns the log plus every intact record with lsn > `after`, in LSN order.
    /// Corruption anywhere except the tail of the last segment is an error naming the file and offset.
    /// The next LSN handed out is max(highest LSN on disk, after) + 1 (LSNs start at 1), so that
    /// after all segments were deleted, new records still sort after the committed watermark `after`.
    ///
    /// The new segment file is created by the first append, so opening and closing
    /// a log without appending leaves no empty files behind. A lock that looks held
    /// is retried for up to 200 ms first (a child process this process is forking
    /// shares the lock until it execs). Every returned record has a smaller LSN
    /// than anything appended through the returned handle.
    ///
    /// This does blocking file I/O; from async code call it inside `spawn_blocking`.
    pub fn open(dir: &Path, after: u64, options: WalOptions) -> Result<(Wal, Vec<WalRecord>)> {
        let existed = dir.is_dir();
        fs::create_dir_all(dir)
            .map_err(|e| io_error(dir, "creating write-ahead log directory", e))?;
        if !existed {
            // Make the new directory's own name durable too.
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            sync_dir(parent)?;
        }
        let lock = lock_dir(dir)?;
        let recovered = recover(dir, after)?;

        let next_lsn = recovered.max_lsn.max(after).checked_add(1).ok_or_else(|| {
            Error::Internal(format!(
                "write-ahead log {}: LSN space exhausted (after = {after})",
                dir.display()
            ))
        })?;
        let closed_bytes: u64 = recovered.segments.iter().map(|s| s.bytes).sum();
        let stats = Arc::new(Stats {
            last_lsn: AtomicU64::new(next_lsn - 1),
            disk_bytes: AtomicU64::new(closed_bytes),
            syncs: AtomicU64::new(0),
        });
        let writer = Writer::new(
            dir.to_path_buf(),
            options.segment_bytes,
            recovered.segments,
            closed_bytes,
            next_lsn,
            Arc::clone(&stats),
            lock,
        );
        let (requests, queue) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("pitlake-wal".to_string())
            .spawn(move || writer.run(queue))
            .map_err(|e| io_error(dir, "starting the write-ahead log writer thread", e))?;
        let wal = Wal {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                requests,
                stats,
                writer: Some(handle),
            }),
        };
        Ok((wal, recovered.records))
    }

    /// Appends one batch and returns its LSN once the record is written and fsync'd.
    /// Concurrent appends share one fsync (group commit): a single writer thread owns the file,
    /// takes every request that is waiting, writes them all, calls sync_data once, then replies to all.
    /// The IPC encoding of the batch happens in the caller, not in the writer thread.
    ///
    /// If this future is dropped after the record was queued, the record may still
    /// be logged (and replayed later) without the caller having seen its LSN.
    /// After an I/O error the log refuses all further appends until reopened.
    pub async fn append(&self, batch: &RecordBatch) -> Result<u64> {
        self.submit(batch)?.await
    }

    /// Queues one batch now (records keep the order of `submit` calls) and
    /// returns a future of its LSN, ready once it is fsync'd: a writer can
    /// queue its next record before the previous one is durable, so one
    /// stream's records share fsyncs.
    pub fn submit(
        &self,
        batch: &RecordBatch,
    ) -> Result<impl std::future::Future<Output = Result<u64>> + Send + 'static> {
        self.submit_encoded(self.encode(batch)?)
    }

    /// Encodes one batch as a record, on the caller's thread: records of one
    /// log can be encoded in parallel, then queued in order with
    /// [`Self::submit_encoded`].
    pub fn encode(&self, batch: &RecordBatch) -> Result<Encoded> {
        encode_frame(&self.inner.dir, batch)
    }

    /// [`Self::submit`] for a record encoded by [`Self::encode`].
    pub fn submit_encoded(
        &self,
        record: Encoded,
    ) -> Result<impl std::future::Future<Output = Result<u64>> + Send + 'static> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Append(Append { record, reply }))?;
        let wal = self.clone();
        Ok(async move { answer.await.map_err(|_| wal.writer_gone())? })
    }

    /// Deletes every segment whose records all have lsn <= `lsn` (they are committed elsewhere).
    /// Never deletes the segment currently being written. Runs through the writer thread (or
    /// otherwise safely) so it never races an append or rotation.
    ///
    /// Segments are deleted oldest first, so a crash in between leaves a log
    /// without holes. It also works on a log poisoned by a failed append: the
    /// segments it deletes were synced and closed before that failure.
    pub async fn truncate_through(&self, lsn: u64) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Truncate {
            lsn,
            seal: false,
            reply,
        })?;
        answer.await.map_err(|_| self.writer_gone())?
    }

    /// As [`Wal::truncate_through`], and the segment being written goes too
    /// when all its records are through `lsn` (appends then start a new
    /// one): no record through `lsn` is left on disk. For ERASE.
    pub async fn purge_through(&self, lsn: u64) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Truncate {
            lsn,
            seal: true,
            reply,
        })?;
        answer.await.map_err(|_| self.writer_gone())?
    }

    /// Highest LSN handed out so far (0 if none and after == 0).
    pub fn last_lsn(&self) -> u64 {
        self.inner.stats.last_lsn.load(Ordering::Acquire)
    }

    /// Bytes currently on disk in segments.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.stats.disk_bytes.load(Ordering::Relaxed)
    }

    /// Number of `sync_data` calls on segment files since open; compared with the
    /// number of appends it shows how well group commit batches.
    pub fn syncs(&self) -> u64 {
        self.inner.stats.syncs.load(Ordering::Relaxed)
    }

    /// Tests: stops the writer thread, once it has taken what is queued now,
    /// until the returned sender is dropped.
    #[cfg(test)]
    fn hold_writer(&self) -> mpsc::Sender<()> {
        let (hold, until) = mpsc::channel();
        self.send(Request::Hold(until)).expect("writer");
        hold
    }

    fn send(&self, request: Request) -> Result<()> {
        self.inner
            .requests
            .send(request)
            .map_err(|_| self.writer_gone())
    }

    fn writer_gone(&self) -> Error {
        Error::Internal(format!(
            "write-ahead log {}: the writer thread has stopped, nothing more can be logged",
            self.inner.dir.display()
        ))
    }
}

/// An I/O error with the path and what was being done.
fn io_error(path: &Path, doing: &str, source: io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source: io::Error::new(source.kind(), format!("{doing}: {source}")),
    }
}

/// fsyncs a directory so that files created or deleted in it stay so after a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "fsync of write-ahead log directory", e))
}

/// Takes the exclusive lock on `dir`; the returned file holds it until closed.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(&path, "opening write-ahead log lock file", e))?;
    // flock locks belong to the open file, which a child forked by this process
    // shares until it execs; a handle just dropped here can therefore look held
    // for a moment. Retry briefly before calling the log owned by someone else.
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    what: format!("write-ahead log {} ({})", dir.display(), path.display()),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(io_error(&path, "locking write-ahead log", e));
            }
        }
    }
}

/// A segment that is complete and synced: it is never written again.
#[derive(Debug)]
struct ClosedSegment {
    path: PathBuf,
    last_lsn: u64,
    bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn handle_is_send_and_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Wal>();
    }

    #[tokio::test]
    async fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(dir.path(), 0);
        wal.append(&batch(1, 1)).await.expect("append");
        let err = Wal::open(dir.path(), 0, WalOptions::default()).expect_err("locked");
        let message = err.to_string();
        assert!(
            matches!(err, Error::Locked { .. }) && message.contains("another pitlake process"),
            "{message}"
        );
        let clone = wal.clone();
        drop(wal);
        // Still held by the clone.
        assert!(Wal::open(dir.path(), 0, WalOptions::default()).is_err());
        drop(clone);
        let (_wal, replay) = open(dir.path(), 0);
        assert_eq!(lsns(&replay), vec![1]);
    }
}
