//! Helpers shared by the log's unit tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::format::{HEADER_LEN, MAGIC};
use super::{Wal, WalOptions, WalRecord};

pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// A batch of `rows` rows whose contents depend on `seed`; every third name is NULL.
pub fn batch(seed: i64, rows: usize) -> RecordBatch {
    let keys: Vec<i64> = (0..rows as i64).map(|i| seed * 1_000_000 + i).collect();
    let names: Vec<Option<String>> = (0..rows)
        .map(|i| (i % 3 != 1).then(|| format!("name-{seed}-{i}")))
        .collect();
    let ts: Vec<i64> = (0..rows as i64)
        .map(|i| 1_700_000_000_000_000 + seed * 1000 + i)
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(keys)),
            Arc::new(StringArray::from(names)),
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
        ],
    )
    .expect("batch")
}

pub fn open(dir: &Path, after: u64) -> (Wal, Vec<WalRecord>) {
    Wal::open(dir, after, WalOptions::default()).expect("open")
}

pub fn open_tiny(dir: &Path, after: u64) -> (Wal, Vec<WalRecord>) {
    Wal::open(dir, after, WalOptions { segment_bytes: 1 }).expect("open")
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    paths
}

pub fn lsns(records: &[WalRecord]) -> Vec<u64> {
    records.iter().map(|r| r.lsn).collect()
}

/// Byte offsets of the records in a segment file.
pub fn record_offsets(data: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = MAGIC.len();
    while pos + HEADER_LEN <= data.len() {
        offsets.push(pos);
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes"));
        pos += HEADER_LEN + len as usize;
    }
    offsets
}

/// Appends batches with seeds `seeds` (rows = seed % 5 + 1) and returns their LSNs.
pub async fn append_seeds(wal: &Wal, seeds: std::ops::Range<i64>) -> Vec<u64> {
    let mut out = Vec::new();
    for seed in seeds {
        out.push(
            wal.append(&batch(seed, (seed % 5 + 1) as usize))
                .await
                .expect("append"),
        );
    }
    out
}

pub fn assert_seed(record: &WalRecord, seed: i64) {
    assert_eq!(
        record.batch,
        batch(seed, (seed % 5 + 1) as usize),
        "lsn {}",
        record.lsn
    );
}
