//! The writer thread: owns the segment files, appends the records queued
//! since its last round with one vectored write and one `sync_data` (group
//! commit), rotates segments and deletes committed ones.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::format::{Encoded, MAGIC, record_crc, segment_path};
use super::{ClosedSegment, Stats, io_error, sync_dir};
use crate::error::{Error, Result};

/// What handles ask the writer thread to do.
pub(super) enum Request {
    Append(Append),
    Truncate {
        lsn: u64,
        /// Also close the segment being written when all its records are
        /// through `lsn`, so that it goes too.
        seal: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown,
    /// Tests: the writer stops here until the sender is dropped, so that
    /// what is queued meanwhile is one round.
    #[cfg(test)]
    Hold(mpsc::Receiver<()>),
}

/// One record waiting to be written.
pub(super) struct Append {
    pub(super) record: Encoded,
    pub(super) reply: oneshot::Sender<Result<u64>>,
}

/// The segment records are appended to.
struct Current {
    file: File,
    path: PathBuf,
    /// Records in the file (or queued for it in this round).
    records: u64,
    last_lsn: u64,
    /// Bytes in the file (or queued for it in this round).
    bytes: u64,
}

/// A failed I/O step of a round, kept so every waiter gets its own copy.
struct Failure {
    path: PathBuf,
    doing: &'static str,
    source: io::Error,
}

impl Failure {
    fn to_error(&self) -> Error {
        io_error(
            &self.path,
            self.doing,
            io::Error::new(self.source.kind(), self.source.to_string()),
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.path.display(),
            self.doing,
            self.source
        )
    }
}

/// Owns the segment files; runs on its own thread.
pub(super) struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    /// Synced segments, oldest first; all hold at least one record.
    closed: VecDeque<ClosedSegment>,
    closed_bytes: u64,
    /// None until the first append after open: open never reuses a segment.
    current: Option<Current>,
    next_lsn: u64,
    /// Set after a failed write or sync: what is on disk is then unknown.
    poisoned: Option<String>,
    stats: Arc<Stats>,
    /// Held (never read) so the directory stays locked while the writer runs.
    _lock: File,
}

impl Writer {
    /// The writer of a log opened with `closed` segments (of `closed_bytes`)
    /// on disk, whose next record gets `next_lsn`; `lock` keeps the directory
    /// locked while it runs.
    pub(super) fn new(
        dir: PathBuf,
        segment_bytes: u64,
        closed: VecDeque<ClosedSegment>,
        closed_bytes: u64,
        next_lsn: u64,
        stats: Arc<Stats>,
        lock: File,
    ) -> Writer {
        Writer {
            dir,
            segment_bytes,
            closed,
            closed_bytes,
            current: None,
            next_lsn,
            poisoned: None,
            stats,
            _lock: lock,
        }
    }

    pub(super) fn run(mut self, queue: mpsc::Receiver<Request>) {
        let mut round: Vec<Append> = Vec::new();
        // Block for the first request, then take whatever else is already waiting:
        // one write and one fsync for all of it.
        while let Ok(first) = queue.recv() {
            let mut shutdown = false;
            let mut next = Some(first);
            while let Some(request) = next {
                match request {
                    Request::Append(append) => round.push(append),
                    Request::Truncate { lsn, seal, reply } => {
                        // Appends queued before it are handled before it.
                        self.append_round(&mut round);
                        if seal {
                            self.seal_through(lsn);
                        }
                        let _ = reply.send(self.truncate_through(lsn));
                    }
                    Request::Shutdown => {
                        shutdown = true;
                        break;
                    }
                    #[cfg(test)]
                    Request::Hold(until) => {
                        let _ = until.recv();
                    }
                }
                next = queue.try_recv().ok();
            }
            self.append_round(&mut round);
            if shutdown {
                break;
            }
        }
    }

    /// Writes and syncs every append of the round, then answers each of them.
    fn append_round(&mut self, round: &mut Vec<Append>) {
        if round.is_empty() {
            return;
        }
        if let Some(reason) = &self.poisoned {
            let message = format!(
                "write-ahead log {} refuses appends after an earlier I/O error ({reason}); \
                 reopen it to recover",
                self.dir.display()
            );
            for append in round.drain(..) {
                let _ = append.reply.send(Err(Error::Internal(message.clone())));
            }
            return;
        }
        let first_lsn = self.next_lsn;
        let outcome = self.write_round(round);
        // Published before anyone is answered, so a caller sees its own append
        // in last_lsn() and disk_bytes().
        self.publish_disk_bytes();
        match outcome {
            Ok(()) => {
                self.stats
                    .last_lsn
                    .store(self.next_lsn - 1, Ordering::Release);
                for (lsn, append) in (first_lsn..).zip(round.drain(..)) {
                    // A waiter that gave up is no reason to stop.
                    let _ = append.reply.send(Ok(lsn));
                }
            }
            Err(failure) => {
                for append in round.drain(..) {
                    let _ = append.reply.send(Err(failure.to_error()));
                }
                self.poisoned = Some(failure.to_string());
            }
        }
    }

    fn write_round(&mut self, round: &mut [Append]) -> std::result::Result<(), Failure> {
        let first_lsn = self.next_lsn;
        for (lsn, append) in (first_lsn..).zip(round.iter_mut()) {
            let record = &mut append.record;
            let crc = record_crc(lsn, &record.payload_crc);
            record.frame[4..8].copy_from_slice(&crc.to_le_bytes());
            record.frame[8..16].copy_from_slice(&lsn.to_le_bytes());
        }
        // Frames round[pending..] are not yet written to the current segment.
        let mut pending = 0;
        for (index, lsn) in (first_lsn..).take(round.len()).enumerate() {
            let full = match &self.current {
                None => true,
                Some(c) => c.records > 0 && c.bytes >= self.segment_bytes,
            };
            if full {
                if self.current.is_some() {
                    self.write_and_sync(&round[pending..index])?;
                    pending = index;
                }
                self.start_segment(lsn)?;
            }
            if let Some(current) = self.current.as_mut() {
                current.records += 1;
                current.last_lsn = lsn;
                current.bytes += round[index].record.frame.len() as u64;
            }
        }
        self.write_and_sync(&round[pending..])?;
        self.next_lsn = first_lsn + round.len() as u64;
        Ok(())
    }

    /// Writes frames to the current segment with vectored writes and syncs it.
    fn write_and_sync(&mut self, frames: &[Append]) -> std::result::Result<(), Failure> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        if frames.is_empty() {
            return Ok(());
        }
        let failure = |doing, source| Failure {
            path: current.path.clone(),
            doing,
            source,
        };
        let mut slices: Vec<IoSlice<'_>> = frames
            .iter()
            .map(|a| IoSlice::new(&a.record.frame))
            .collect();
        write_all_vectored(&mut current.file, &mut slices)
            .map_err(|e| failure("writing to write-ahead log segment", e))?;
        current
            .file
            .sync_data()
            .map_err(|e| failure("fsync of write-ahead log segment", e))?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the current segment (already synced) and creates the next one,
    /// named `first_lsn`, with a durable directory entry.
    fn start_segment(&mut self, first_lsn: u64) -> std::result::Result<(), Failure> {
        if let Some(old) = self.current.take() {
            self.closed_bytes += old.bytes;
            self.closed.push_back(ClosedSegment {
                path: old.path,
                last_lsn: old.last_lsn,
                bytes: old.bytes,
            });
        }
        let path = segment_path(&self.dir, first_lsn);
        let failure = |doing, source| Failure {
            path: path.clone(),
            doing,
            source,
        };
        // create_new: a name clash would mean the log's bookkeeping is wrong,
        // and overwriting would lose records.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| failure("creating write-ahead log segment", e))?;
        // The magic reaches the disk with the first records' sync_data.
        file.write_all(MAGIC)
            .map_err(|e| failure("writing write-ahead log segment header", e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Failure {
                path: self.dir.clone(),
                doing: "fsync of write-ahead log directory",
                source: e,
            })?;
        self.current = Some(Current {
            file,
            path,
            records: 0,
            last_lsn: 0,
            bytes: MAGIC.len() as u64,
        });
        Ok(())
    }

    /// Closes the current segment (synced with every round) when it holds
    /// records, all through `lsn`; the next append starts a new one.
    fn seal_through(&mut self, lsn: u64) {
        if let Some(current) = self.current.take_if(|c| c.records > 0 && c.last_lsn <= lsn) {
            self.closed.push_back(ClosedSegment {
                path: current.path,
                last_lsn: current.last_lsn,
                bytes: current.bytes,
            });
            self.closed_bytes += current.bytes;
        }
    }

    fn truncate_through(&mut self, lsn: u64) -> Result<()> {
        let mut deleted = false;
        let mut outcome = Ok(());
        // Oldest first: a crash part way leaves a log without holes.
        while let Some(segment) = self.closed.front() {
            if segment.last_lsn > lsn {
                break;
            }
            match fs::remove_file(&segment.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    outcome = Err(io_error(
                        &segment.path,
                        "deleting committed write-ahead log segment",
                        e,
                    ));
                    break;
                }
            }
            self.closed_bytes -= segment.bytes;
            self.closed.pop_front();
            deleted = true;
        }
        if deleted {
            self.publish_disk_bytes();
            sync_dir(&self.dir)?;
        }
        outcome
    }

    fn publish_disk_bytes(&self) {
        let current = self.current.as_ref().map_or(0, |c| c.bytes);
        self.stats
            .disk_bytes
            .store(self.closed_bytes + current, Ordering::Relaxed);
    }
}

/// `write_all` for a list of buffers: one syscall per up to IOV_MAX buffers.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file accepted no more bytes",
                ));
            }
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::super::format::segment_path;
    use super::super::testing::*;
    use super::super::{Wal, WalOptions};

    #[tokio::test]
    async fn rotation_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open_tiny(dir.path(), 0);
        assert_eq!(append_seeds(&wal, 1..7).await, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(segments(dir.path()).len(), 6, "one segment per record");
        let before = wal.disk_bytes();

        wal.truncate_through(3).await.expect("truncate");
        let left = segments(dir.path());
        assert_eq!(
            left,
            (4..=6)
                .map(|l| segment_path(dir.path(), l))
                .collect::<Vec<_>>()
        );
        let on_disk: u64 = left
            .iter()
            .map(|p| fs::metadata(p).expect("meta").len())
            .sum();
        assert_eq!(wal.disk_bytes(), on_disk);
        assert!(wal.disk_bytes() < before);

        // The segment being written (6) survives even when fully committed.
        wal.truncate_through(6).await.expect("truncate");
        assert_eq!(segments(dir.path()), vec![segment_path(dir.path(), 6)]);
        drop(wal);

        let (wal, replay) = open_tiny(dir.path(), 5);
        assert_eq!(lsns(&replay), vec![6]);
        assert_seed(&replay[0], 6);
        // After reopen segment 6 is closed, so now it can go.
        wal.truncate_through(6).await.expect("truncate");
        assert!(segments(dir.path()).is_empty());
        assert_eq!(wal.disk_bytes(), 0);
        drop(wal);

        let (wal, replay) = open_tiny(dir.path(), 6);
        assert!(replay.is_empty());
        assert_eq!(wal.last_lsn(), 6);
        assert_eq!(wal.append(&batch(7, 1)).await.expect("append"), 7);
        drop(wal);

        // A watermark past everything on disk moves the next LSN on too.
        let (wal, replay) = open_tiny(dir.path(), 10);
        assert!(replay.is_empty());
        assert_eq!(wal.append(&batch(8, 1)).await.expect("append"), 11);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_share_fsyncs() {
        const TASKS: i64 = 64;
        const PER_TASK: i64 = 20;
        // Records queued while the writer is busy are written and synced
        // together: 32 appends, one fsync (one per append without group
        // commit).
        let held_dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(held_dir.path(), 0);
        let held = wal.hold_writer();
        let queued: Vec<_> = (0..32)
            .map(|seed| {
                let record = wal.encode(&batch(seed, (seed % 5 + 1) as usize));
                wal.submit_encoded(record.expect("encoded"))
                    .expect("queued")
            })
            .collect();
        drop(held);
        for (future, lsn) in queued.into_iter().zip(1..) {
            assert_eq!(future.await.expect("append"), lsn);
        }
        assert_eq!(wal.syncs(), 1, "32 appends queued together, one fsync");
        drop(wal);

        let dir = tempfile::tempdir().expect("tempdir");
        // Small segments so rotation happens inside rounds too.
        let (wal, _) = Wal::open(
            dir.path(),
            0,
            WalOptions {
                segment_bytes: 64 * 1024,
            },
        )
        .expect("open");
        // Then many tasks at once, rotating segments inside rounds: every
        // append gets its own LSN and is replayed as it was appended.
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..PER_TASK {
                    let seed = task * PER_TASK + i;
                    got.push((
                        wal.append(&batch(seed, (seed % 5 + 1) as usize)).await,
                        seed,
                    ));
                }
                got
            }));
        }
        let mut seed_of = HashMap::new();
        for task in tasks {
            for (lsn, seed) in task.await.expect("task") {
                assert!(seed_of.insert(lsn.expect("append"), seed).is_none());
            }
        }
        let total = (TASKS * PER_TASK) as u64;
        let mut all: Vec<u64> = seed_of.keys().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=total).collect::<Vec<_>>());
        println!(
            "group commit: {total} appends, {} fsyncs, {} segments",
            wal.syncs(),
            segments(dir.path()).len()
        );
        drop(wal);

        let (_wal, replay) = open(dir.path(), 0);
        assert_eq!(replay.len() as u64, total);
        assert_eq!(lsns(&replay), (1..=total).collect::<Vec<_>>());
        for record in &replay {
            assert_seed(record, seed_of[&record.lsn]);
        }
    }

    #[tokio::test]
    async fn io_error_poisons_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let (wal, _) = open_tiny(&log, 0);
        wal.append(&batch(1, 1)).await.expect("append");
        // The next append must create a segment in a directory that is gone.
        fs::remove_dir_all(&log).expect("remove");
        let err = wal.append(&batch(2, 1)).await.expect_err("no directory");
        let message = err.to_string();
        assert!(
            message.contains("creating write-ahead log segment"),
            "{message}"
        );
        fs::create_dir_all(&log).expect("mkdir");
        let err = wal.append(&batch(3, 1)).await.expect_err("poisoned");
        let message = err.to_string();
        assert!(message.contains("refuses appends"), "{message}");
        assert_eq!(wal.last_lsn(), 1);
    }

    /// Throughput of 1000-row batches from 4 tasks. Run with
    /// `cargo test --release -- --ignored --nocapture append_throughput`;
    /// `WAL_BENCH_TASKS` and `WAL_BENCH_SECONDS` change the load.
    #[tokio::test(flavor = "multi_thread")]
    #[ignore = "benchmark; prints numbers"]
    async fn append_throughput() {
        const ROWS: usize = 1000;
        let env = |name: &str, default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default)
        };
        let seconds = env("WAL_BENCH_SECONDS", 5);
        let tasks_n = env("WAL_BENCH_TASKS", 4);
        let mut fields = vec![
            Field::new("key", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
        ];
        fields.extend((0..8).map(|i| Field::new(format!("f{i}"), DataType::Float64, false)));
        let mut columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(Int64Array::from_iter_values(0..ROWS as i64)),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..ROWS as i64).map(|i| 1_700_000_000_000_000 + i),
            )),
        ];
        columns.extend((0..8).map(|c| {
            Arc::new(Float64Array::from_iter_values(
                (0..ROWS).map(|i| (i * (c + 1)) as f64 * 0.5),
            )) as Arc<dyn Array>
        }));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch");

        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(dir.path(), 0);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..tasks_n {
            let wal = wal.clone();
            let batch = batch.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    wal.append(&batch).await.expect("append");
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("task"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let n = latencies.len() as f64;
        println!(
            "{tasks_n} tasks, {ROWS}-row batches ({} bytes on disk each): {:.0} batches/s, \
             {:.0} rows/s, {:.1} MB/s, p50 {:?}, p99 {:?}, {} appends / {} fsyncs",
            wal.disk_bytes() / latencies.len() as u64,
            n / elapsed,
            n * ROWS as f64 / elapsed,
            wal.disk_bytes() as f64 / elapsed / 1e6,
            pick(0.50),
            pick(0.99),
            latencies.len(),
            wal.syncs()
        );
    }
}
