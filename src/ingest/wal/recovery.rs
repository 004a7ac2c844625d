//! Opening a log after a crash: scan every segment, cut a torn tail off the
//! newest one, delete segments a crash left empty, and report damage
//! anywhere else as [`Error::Corrupt`].

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::format::{
    Damage, MAGIC, decode_payload, never_written, parse_segment_name, scan_segment,
};
use super::{ClosedSegment, WalRecord, io_error, sync_dir};
use crate::error::{Error, Result};

/// What open found on disk.
pub(super) struct Recovered {
    pub(super) segments: VecDeque<ClosedSegment>,
    pub(super) records: Vec<WalRecord>,
    pub(super) max_lsn: u64,
}

fn corrupt(path: &Path, offset: u64, reason: &str) -> Error {
    Error::Corrupt(format!(
        "write-ahead log segment {} is corrupt at byte offset {offset}: {reason}; only the tail of \
         the newest segment can be torn by a crash, so this log needs a manual look",
        path.display()
    ))
}

/// Scans all segments in `dir`, repairs what a crash can leave behind, and
/// decodes the records after `after`.
pub(super) fn recover(dir: &Path, after: u64) -> Result<Recovered> {
    let mut names = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| io_error(dir, "listing write-ahead log directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "listing write-ahead log directory", e))?;
        if let Some(first_lsn) = entry.file_name().to_str().and_then(parse_segment_name) {
            names.push((first_lsn, entry.path()));
        }
    }
    names.sort();

    let mut recovered = Recovered {
        segments: VecDeque::new(),
        records: Vec::new(),
        max_lsn: 0,
    };
    // Repairs wait until every segment checked out, so an error leaves the
    // files as they were.
    let mut delete = Vec::new();
    let mut cut: Option<(PathBuf, u64)> = None;
    let count = names.len();
    for (index, (first_lsn, path)) in names.into_iter().enumerate() {
        let is_last = index + 1 == count;
        let data =
            fs::read(&path).map_err(|e| io_error(&path, "reading write-ahead log segment", e))?;
        let scan = scan_segment(&data, first_lsn);
        match &scan.damage {
            None => {}
            // Created, then the crash came before its magic reached the disk:
            // holds no record, wherever it is.
            Some(Damage::Header) if never_written(&data) => {}
            Some(Damage::Header) => {
                return Err(corrupt(
                    &path,
                    0,
                    "the file does not start with the write-ahead log magic PLWAL001",
                ));
            }
            Some(Damage::Record { offset, reason }) if !is_last => {
                return Err(corrupt(&path, *offset, reason));
            }
            Some(Damage::Record { .. }) => {}
        }
        let Some(last) = scan.records.last() else {
            // Only magic (or nothing): may be deleted; it must be, because the
            // next segment may want its name.
            delete.push(path);
            continue;
        };
        if first_lsn <= recovered.max_lsn {
            return Err(corrupt(
                &path,
                MAGIC.len() as u64,
                &format!(
                    "its first lsn {first_lsn} is not after lsn {} of an earlier segment",
                    recovered.max_lsn
                ),
            ));
        }
        recovered.max_lsn = last.lsn;
        if scan.damage.is_some() {
            cut = Some((path.clone(), scan.valid_len));
        }
        for record in scan.records.iter().filter(|r| r.lsn > after) {
            let batch = decode_payload(&data[record.payload.clone()]).map_err(|reason| {
                corrupt(
                    &path,
                    record.offset as u64,
                    &format!(
                        "record lsn {} passes its checksum but is not a valid Arrow IPC stream: \
                         {reason}",
                        record.lsn
                    ),
                )
            })?;
            recovered.records.push(WalRecord {
                lsn: record.lsn,
                batch,
            });
        }
        recovered.segments.push_back(ClosedSegment {
            path,
            last_lsn: last.lsn,
            bytes: scan.valid_len,
        });
    }

    if let Some((path, len)) = cut {
        // Cut the torn tail so later scans (and replays) see a clean segment.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.set_len(len)?;
                f.sync_all()
            })
            .map_err(|e| io_error(&path, "cutting the torn tail of write-ahead log segment", e))?;
    }
    if !delete.is_empty() {
        for path in &delete {
            fs::remove_file(path)
                .map_err(|e| io_error(path, "deleting empty write-ahead log segment", e))?;
        }
        sync_dir(dir)?;
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::path::Path;

    use arrow::array::RecordBatch;

    use super::super::format::{HEADER_LEN, MAGIC, parse_segment_name, scan_segment, segment_path};
    use super::super::testing::*;
    use super::super::{Wal, WalOptions};
    use crate::error::Error;

    #[tokio::test]
    async fn reopen_returns_the_same_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let batches = [batch(1, 1), batch(2, 17), batch(3, 500)];
        assert!(batches[1].column(1).null_count() > 0);
        {
            let (wal, replay) = open(dir.path(), 0);
            assert!(replay.is_empty());
            assert_eq!(wal.last_lsn(), 0);
            for (i, b) in batches.iter().enumerate() {
                assert_eq!(wal.append(b).await.expect("append"), i as u64 + 1);
            }
            assert_eq!(wal.last_lsn(), 3);
            let on_disk: u64 = segments(dir.path())
                .iter()
                .map(|p| fs::metadata(p).expect("meta").len())
                .sum();
            assert_eq!(wal.disk_bytes(), on_disk);
        }
        let (wal, replay) = open(dir.path(), 0);
        assert_eq!(lsns(&replay), vec![1, 2, 3]);
        for (record, expected) in replay.iter().zip(&batches) {
            assert_eq!(&record.batch, expected);
        }
        assert_eq!(wal.last_lsn(), 3);
    }

    #[tokio::test]
    async fn reopen_after_watermark_skips_committed_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (wal, _) = open(dir.path(), 0);
            append_seeds(&wal, 1..4).await;
        }
        {
            let (wal, replay) = open(dir.path(), 2);
            assert_eq!(lsns(&replay), vec![3]);
            assert_seed(&replay[0], 3);
            assert_eq!(wal.last_lsn(), 3);
            assert_eq!(wal.append(&batch(4, 2)).await.expect("append"), 4);
        }
        // The new record went to a new segment named by its LSN.
        let names: Vec<String> = segments(dir.path())
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["00000000000000000001.wal", "00000000000000000004.wal"]
        );
        let (_wal, replay) = open(dir.path(), 0);
        assert_eq!(lsns(&replay), vec![1, 2, 3, 4]);
    }

    /// Writes seeds 1..=5, damages the last segment with `damage`, and checks
    /// recovery keeps `intact` records and the log then works normally.
    async fn torn_tail_case(damage: impl FnOnce(&Path), intact: u64) {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (wal, _) = open(dir.path(), 0);
            append_seeds(&wal, 1..6).await;
        }
        let last = segments(dir.path()).pop().expect("a segment");
        damage(&last);
        let (wal, replay) = open(dir.path(), 0);
        assert_eq!(lsns(&replay), (1..=intact).collect::<Vec<_>>());
        for record in &replay {
            assert_seed(record, record.lsn as i64);
        }
        // The tail was cut off for good.
        let data = fs::read(&last).expect("read");
        assert_eq!(scan_segment(&data, 1).damage.map(|_| ()), None);
        assert_eq!(record_offsets(&data).len() as u64, intact);

        let new = append_seeds(&wal, 100..103).await;
        assert_eq!(new, vec![intact + 1, intact + 2, intact + 3]);
        drop(wal);
        let (wal, replay) = open(dir.path(), 0);
        let got = lsns(&replay);
        assert_eq!(got, (1..=intact + 3).collect::<Vec<_>>());
        for (record, seed) in replay[intact as usize..].iter().zip(100..) {
            assert_seed(record, seed);
        }
        assert_eq!(wal.append(&batch(7, 1)).await.expect("append"), intact + 4);
    }

    #[tokio::test]
    async fn torn_tail_chopped_is_cut_off() {
        torn_tail_case(
            |path| {
                let len = fs::metadata(path).expect("meta").len();
                let file = OpenOptions::new().write(true).open(path).expect("open");
                file.set_len(len - 5).expect("set_len");
            },
            4,
        )
        .await;
    }

    #[tokio::test]
    async fn torn_tail_chopped_into_header_is_cut_off() {
        torn_tail_case(
            |path| {
                let data = fs::read(path).expect("read");
                let last = *record_offsets(&data).last().expect("records");
                let file = OpenOptions::new().write(true).open(path).expect("open");
                file.set_len(last as u64 + 7).expect("set_len");
            },
            4,
        )
        .await;
    }

    #[tokio::test]
    async fn garbage_after_last_record_is_cut_off() {
        torn_tail_case(
            |path| {
                // Deterministic pseudo-random bytes (xorshift).
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
                let garbage: Vec<u8> = (0..300)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let mut file = OpenOptions::new().append(true).open(path).expect("open");
                file.write_all(&garbage).expect("write");
            },
            5,
        )
        .await;
    }

    #[tokio::test]
    async fn corrupt_crc_of_final_record_is_a_torn_tail() {
        torn_tail_case(
            |path| {
                let mut data = fs::read(path).expect("read");
                let last = *record_offsets(&data).last().expect("records");
                data[last + 5] ^= 0x40; // inside the stored crc
                fs::write(path, &data).expect("write");
            },
            4,
        )
        .await;
    }

    #[tokio::test]
    async fn corrupt_payload_of_final_record_is_a_torn_tail() {
        torn_tail_case(
            |path| {
                let mut data = fs::read(path).expect("read");
                let last = *record_offsets(&data).last().expect("records");
                let middle = last + HEADER_LEN + (data.len() - last - HEADER_LEN) / 2;
                data[middle] ^= 0x01;
                fs::write(path, &data).expect("write");
            },
            4,
        )
        .await;
    }

    #[tokio::test]
    async fn corruption_in_an_older_segment_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (wal, _) = open_tiny(dir.path(), 0);
            append_seeds(&wal, 1..4).await;
        }
        let paths = segments(dir.path());
        assert_eq!(paths.len(), 3);
        let mut data = fs::read(&paths[0]).expect("read");
        let middle = data.len() / 2;
        data[middle] ^= 0x01;
        fs::write(&paths[0], &data).expect("write");

        let err = Wal::open(dir.path(), 0, WalOptions::default())
            .expect_err("corrupt older segment must not open");
        // Not the client's fault: a data-loss status for it, a log line for the operator.
        assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("00000000000000000001.wal") && message.contains("offset 8"),
            "{message}"
        );
        // Nothing was repaired or deleted by the failed open.
        assert_eq!(segments(dir.path()), paths);
    }

    #[tokio::test]
    async fn segments_left_empty_by_a_crash_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (wal, _) = open(dir.path(), 0);
            append_seeds(&wal, 1..3).await;
        }
        // A crash right after creating the next segment: nothing, or part of the magic.
        fs::write(segment_path(dir.path(), 3), &MAGIC[..3]).expect("write");
        let (wal, replay) = open(dir.path(), 0);
        assert_eq!(lsns(&replay), vec![1, 2]);
        assert_eq!(segments(dir.path()).len(), 1);
        // The freed name is used for the next segment.
        assert_eq!(wal.append(&batch(3, 4)).await.expect("append"), 3);
        drop(wal);
        let (_wal, replay) = open(dir.path(), 0);
        assert_eq!(lsns(&replay), vec![1, 2, 3]);
    }

    /// Env var that turns `sigkill_child` into the appending child process.
    const CRASH_DIR_VAR: &str = "PITLAKE_WAL_CRASH_DIR";

    /// Appends from 8 tasks and prints `acked {lsn} {seed}` once each append
    /// returned, until killed. Only does something when run by
    /// `sigkill_loses_no_acknowledged_record`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "child process of sigkill_loses_no_acknowledged_record"]
    async fn sigkill_child() {
        let Ok(dir) = std::env::var(CRASH_DIR_VAR) else {
            return;
        };
        let base: i64 = std::env::var("PITLAKE_WAL_CRASH_ROUND")
            .expect("round")
            .parse::<i64>()
            .expect("round number")
            * 1_000_000;
        let (wal, _) = Wal::open(
            Path::new(&dir),
            0,
            WalOptions {
                segment_bytes: 8192,
            },
        )
        .expect("open");
        let mut tasks = Vec::new();
        for task in 0..8 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded, in case the parent never kills us.
                for i in 0..20_000 {
                    let seed = base + task * 100_000 + i;
                    let lsn = wal.append(&batch(seed, 40)).await.expect("append");
                    println!("acked {lsn} {seed}");
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
    }

    /// SIGKILLs a process in the middle of appending, three times over the same
    /// log: every acknowledged record is replayed intact and the log reopens.
    #[test]
    fn sigkill_loses_no_acknowledged_record() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let dir = tempfile::tempdir().expect("tempdir");
        // The harness names tests by path without the crate name.
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let child_test = format!("{module}::sigkill_child");
        let mut acked: HashMap<u64, i64> = HashMap::new();
        for round in 0..3 {
            let mut child = Command::new(std::env::current_exe().expect("test binary"))
                .args([&child_test, "--exact", "--ignored", "--nocapture"])
                .env(CRASH_DIR_VAR, dir.path())
                .env("PITLAKE_WAL_CRASH_ROUND", (round + 1).to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn child");
            let stdout = child.stdout.take().expect("stdout");
            let mut seen = 0;
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("line");
                let Some(rest) = line.strip_prefix("acked ") else {
                    continue;
                };
                let (lsn, seed) = rest.split_once(' ').expect("two numbers");
                let lsn: u64 = lsn.parse().expect("lsn");
                let previous = acked.insert(lsn, seed.parse().expect("seed"));
                assert!(previous.is_none(), "lsn {lsn} acknowledged twice");
                seen += 1;
                if seen == 200 {
                    break;
                }
            }
            assert_eq!(seen, 200, "child stopped early");
            child.kill().expect("kill");
            child.wait().expect("wait");
            let torn = segments(dir.path()).last().is_some_and(|last| {
                let first = parse_segment_name(&last.file_name().expect("name").to_string_lossy());
                let data = fs::read(last).expect("read");
                scan_segment(&data, first.expect("segment name"))
                    .damage
                    .is_some()
            });

            let (_wal, replay) = open(dir.path(), 0);
            assert!(replay.windows(2).all(|w| w[0].lsn < w[1].lsn));
            let by_lsn: HashMap<u64, &RecordBatch> =
                replay.iter().map(|r| (r.lsn, &r.batch)).collect();
            for (lsn, seed) in &acked {
                let got = by_lsn
                    .get(lsn)
                    .unwrap_or_else(|| panic!("acknowledged lsn {lsn} lost"));
                assert_eq!(**got, batch(*seed, 40), "lsn {lsn}");
            }
            println!(
                "round {round}: {} acknowledged so far, {} records on disk, torn tail: {torn}",
                acked.len(),
                replay.len()
            );
        }
    }
}
