//! redb as a candidate online store, on pitlake's online workload.
//!
//! `CARGO_TARGET_DIR=$HOME/.cache/kv-compare-target cargo run --release --manifest-path benches/kv_compare/Cargo.toml`
//!
//! Same shape as `benches/online.rs`: 1M entities keyed by a BIGINT id, an
//! event time in microseconds and 32 DOUBLE features. Measures bulk load,
//! streaming-style upserts with fsync'd commits, and point lookups that end
//! in an Arrow `RecordBatch` (what pitlake's lookup returns), then prints a
//! markdown table. Everything runs in one process on a temporary file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const ENTITIES: u64 = 1_000_000;
const FEATURES: usize = 32;
/// Event time (8 bytes) then the 32 features (8 bytes each), little-endian.
const VALUE_LEN: usize = 8 + 8 * FEATURES;
const LOAD_TXN_ROWS: u64 = 10_000;
const UPSERT_BATCH_ROWS: usize = 1_000;
const UPSERT_BATCHES: usize = 2_000;
const LOOKUP_REQUESTS: usize = 20_000;
const LOOKUP_WARMUP: usize = 1_000;
/// 2024-01-01T00:00:00 in microseconds.
const T0: i64 = 1_704_067_200_000_000;
/// Loaded rows sit at T0 + 1e12 µs (~11.6 days); upserts draw whole
/// milliseconds uniformly from [T0, T0 + 2e12 µs), so about half of the first
/// upserts of a key are older than the stored row and must be dropped: the
/// read in read-modify-write decides. (Milliseconds keep the draw under the
/// generator's 31-bit range.)
const LOAD_OFFSET: i64 = 1_000_000_000_000;
const UPSERT_SPAN_MS: u64 = 2_000_000_000;

/// A fixed-width value type keeps the encoding at exactly 264 bytes, with no
/// length prefix; u64 keys are stored by redb as 8 bytes ordered numerically.
const TABLE: TableDefinition<u64, &[u8; VALUE_LEN]> = TableDefinition::new("features");

/// Deterministic generator, so runs are comparable and no rand crate is needed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn encode(t: i64, features: &[f64; FEATURES]) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    v[..8].copy_from_slice(&t.to_le_bytes());
    for (j, f) in features.iter().enumerate() {
        v[8 + 8 * j..16 + 8 * j].copy_from_slice(&f.to_le_bytes());
    }
    v
}

fn decode_time(v: &[u8; VALUE_LEN]) -> i64 {
    i64::from_le_bytes(v[..8].try_into().unwrap())
}

fn decode_feature(v: &[u8; VALUE_LEN], j: usize) -> f64 {
    f64::from_le_bytes(v[8 + 8 * j..16 + 8 * j].try_into().unwrap())
}

/// Cheap, distinct values per (id, feature, version) so nothing compresses to zero.
fn features(id: u64, version: u64) -> [f64; FEATURES] {
    std::array::from_fn(|j| (id * FEATURES as u64 + j as u64) as f64 * 0.25 + version as f64)
}

fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), false),
    ];
    fields.extend((0..FEATURES).map(|j| Field::new(format!("f{j}"), DataType::Float64, false)));
    Arc::new(Schema::new(fields))
}

/// One lookup request as a server would serve it: one read transaction, one
/// `get` per key, decoded column-wise into a single batch of N rows.
fn lookup(db: &Database, schema: &SchemaRef, keys: &[u64]) -> RecordBatch {
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(TABLE).unwrap();
    let mut ids = Vec::with_capacity(keys.len());
    let mut times = Vec::with_capacity(keys.len());
    let mut cols: Vec<Vec<f64>> = (0..FEATURES)
        .map(|_| Vec::with_capacity(keys.len()))
        .collect();
    for &k in keys {
        if let Some(guard) = table.get(k).unwrap() {
            let v = guard.value();
            ids.push(k as i64);
            times.push(decode_time(v));
            for (j, col) in cols.iter_mut().enumerate() {
                col.push(decode_feature(v, j));
            }
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(2 + FEATURES);
    columns.push(Arc::new(Int64Array::from(ids)));
    columns.push(Arc::new(TimestampMicrosecondArray::from(times)));
    columns.extend(
        cols.into_iter()
            .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef),
    );
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// Resident and peak memory of this process, from /proc/self/status, in kB.
fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // tempfile honours TMPDIR; here /tmp is on the same ext4 disk as the
    // warehouse, so fsync costs are real (not tmpfs).
    let dir = tempfile::Builder::new()
        .prefix("kv_compare")
        .tempdir()
        .unwrap();
    let path = dir.path().join("online.redb");
    // Default builder: 1 GiB page cache, enough to hold the whole table, as an
    // online store would be sized.
    let mut db = Database::create(&path).unwrap();
    let file_len = || std::fs::metadata(&path).unwrap().len();
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. Load in key order (like INSERT ... SELECT FROM generate_series),
    // 10k rows per durable transaction.
    let start = Instant::now();
    for first in (0..ENTITIES).step_by(LOAD_TXN_ROWS as usize) {
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TABLE).unwrap();
            for id in first..(first + LOAD_TXN_ROWS).min(ENTITIES) {
                let v = encode(T0 + LOAD_OFFSET, &features(id, 0));
                table.insert(id, &v).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let load = start.elapsed();
    let rss_after_load = proc_status_kb("VmRSS:");
    let size_after_load = file_len();
    rows.push((
        "load 1M rows (10k rows/txn)".into(),
        format!(
            "{:.2} s, {:.0} rows/s",
            load.as_secs_f64(),
            ENTITIES as f64 / load.as_secs_f64()
        ),
    ));
    rows.push(("file size after load".into(), mb(size_after_load)));
    rows.push((
        "RSS after load".into(),
        mb(rss_after_load * 1024) + " (1 GiB cache default)",
    ));

    // compact() needs no live transactions; it moves pages down and trims the
    // file. Repeat until it reports nothing left to do.
    let start = Instant::now();
    while db.compact().unwrap() {}
    let compact = start.elapsed();
    rows.push((
        "file size after compact()".into(),
        format!("{} ({:.2} s)", mb(file_len()), compact.as_secs_f64()),
    ));

    // 2. Streaming-style upserts: each 1k-row batch is one write transaction
    // with the default (Immediate, fsync'd) durability; each row reads the
    // stored time and only overwrites when the incoming event is not older.
    let mut rng = Lcg(42);
    let mut batch_times = Vec::with_capacity(UPSERT_BATCHES);
    let mut commit_times = Vec::with_capacity(UPSERT_BATCHES);
    let mut written = 0u64;
    let start = Instant::now();
    for b in 0..UPSERT_BATCHES {
        let batch: Vec<(u64, i64)> = (0..UPSERT_BATCH_ROWS)
            .map(|_| {
                (
                    rng.next(ENTITIES),
                    T0 + rng.next(UPSERT_SPAN_MS) as i64 * 1000,
                )
            })
            .collect();
        let t_batch = Instant::now();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(TABLE).unwrap();
            for &(id, t) in &batch {
                // Copy the time out so the guard (a borrow of the table) is
                // dropped before the insert.
                let stored = table.get(id).unwrap().map(|g| decode_time(g.value()));
                if stored.is_none_or(|s| t >= s) {
                    let v = encode(t, &features(id, b as u64 + 1));
                    table.insert(id, &v).unwrap();
                    written += 1;
                }
            }
        }
        let t_commit = Instant::now();
        txn.commit().unwrap();
        commit_times.push(t_commit.elapsed());
        batch_times.push(t_batch.elapsed());
    }
    let upsert = start.elapsed();
    batch_times.sort();
    commit_times.sort();
    let total = (UPSERT_BATCHES * UPSERT_BATCH_ROWS) as f64;
    rows.push((
        "upsert 2M rows (get + keep later, 1k rows/txn, fsync)".into(),
        format!(
            "{:.2} s, {:.0} rows/s ({:.0}% written)",
            upsert.as_secs_f64(),
            total / upsert.as_secs_f64(),
            100.0 * written as f64 / total
        ),
    ));
    rows.push((
        "per 1k-row txn p50 / p99".into(),
        format!(
            "{} / {}",
            ms(pct(&batch_times, 0.5)),
            ms(pct(&batch_times, 0.99))
        ),
    ));
    rows.push((
        "commit() alone p50 / p99".into(),
        format!(
            "{} / {}",
            ms(pct(&commit_times, 0.5)),
            ms(pct(&commit_times, 0.99))
        ),
    ));
    rows.push(("file size after upserts".into(), mb(file_len())));

    // 3. Lookups of random keys, each request decoded into one RecordBatch.
    let schema = schema();
    let mut checksum = 0.0;
    for n in [1usize, 10, 100] {
        let mut request = |rng: &mut Lcg| {
            let keys: Vec<u64> = (0..n).map(|_| rng.next(ENTITIES)).collect();
            let t = Instant::now();
            let batch = lookup(&db, &schema, &keys);
            let d = t.elapsed();
            assert_eq!(batch.num_rows(), n);
            assert_eq!(batch.num_columns(), 2 + FEATURES);
            // Use the result so the decode cannot be optimised away.
            let f0 = batch.column(2).as_any().downcast_ref::<Float64Array>();
            checksum += f0.unwrap().value(0);
            d
        };
        for _ in 0..LOOKUP_WARMUP {
            request(&mut rng);
        }
        let mut lat: Vec<Duration> = (0..LOOKUP_REQUESTS).map(|_| request(&mut rng)).collect();
        lat.sort();
        rows.push((
            format!("lookup {n} key(s) → RecordBatch p50 / p99 / p99.9"),
            format!(
                "{} / {} / {}",
                us(pct(&lat, 0.5)),
                us(pct(&lat, 0.99)),
                us(pct(&lat, 0.999))
            ),
        ));
    }
    rows.push((
        "peak RSS (VmHWM)".into(),
        mb(proc_status_kb("VmHWM:") * 1024),
    ));

    println!(
        "redb, {ENTITIES} entities x ({FEATURES} f64 + time), {LOOKUP_REQUESTS} requests per lookup size\n"
    );
    println!("| measure | redb |");
    println!("|---|---|");
    for (k, v) in &rows {
        println!("| {k} | {v} |");
    }
    eprintln!("(checksum {checksum})");
}
