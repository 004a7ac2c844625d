//! The online store against its definition (ASOF JOIN at now()) on random
//! data written by every path, across a restart; and the stream's log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{Float64Type, Int64Type};
use pitlake::Session;
use pitlake::output::cells;

/// A small deterministic generator (no extra crates).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Streamed records of `session` wait in their logs until a flush (or the
/// session's end): nothing commits on its own.
pub(crate) fn hold_commits(session: &Session) {
    session
        .store()
        .streams()
        .set_policy(pitlake::ingest::stream::CommitPolicy {
            interval: Duration::from_secs(3600),
            rows: usize::MAX,
            ..Default::default()
        });
}

async fn run(session: &Session, sql: &str) {
    session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn one_cell(session: &Session, sql: &str) -> String {
    let results = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    cells(&results[0].batches).expect("cells")[0][0].clone()
}

/// The reference rule: per key, the row with the greatest time; on equal
/// times, the one written later.
fn keep_latest(expected: &mut HashMap<i64, (i64, f64)>, rows: &[(i64, i64, f64)]) {
    for &(k, t, v) in rows {
        let e = expected.entry(k).or_insert((t, v));
        if t >= e.0 {
            *e = (t, v);
        }
    }
}

/// `(k, t, v)` rows as VALUES tuples, `t` counted in `unit` from 2020-01-01.
fn values_sql(rows: &[(i64, i64, f64)], unit: &str) -> String {
    rows.iter()
        .map(|(k, t, v)| {
            format!("({k}, TIMESTAMP '2020-01-01 00:00:00' + INTERVAL '{t} {unit}', {v})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Online values of keys 0..n (plus one missing key) via the Rust API.
async fn online_values(session: &Session, n: i64) -> Vec<(i64, Option<f64>)> {
    let keys: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n).chain([n + 1000])));
    let batch = session
        .online_lookup("fg", &[keys], Some(&["v".to_string()]))
        .await
        .expect("lookup");
    let k = batch.column(0).as_primitive::<Int64Type>();
    let v = batch.column(1).as_primitive::<Float64Type>();
    (0..batch.num_rows())
        .map(|i| (k.value(i), v.is_valid(i).then(|| v.value(i))))
        .collect()
}

/// The same through ASOF JOIN at now().
async fn asof_values(session: &Session, n: i64) -> Vec<(i64, Option<f64>)> {
    let sql = format!(
        "WITH probe AS (SELECT value AS k, now() AS ts FROM generate_series(0, {}) UNION ALL SELECT {} AS k, now() AS ts)
         SELECT p.k, f.v FROM probe p ASOF JOIN fg f MATCH_CONDITION (p.ts >= f.t) ON p.k = f.k ORDER BY p.k",
        n - 1,
        n + 1000
    );
    let results = session.sql(&sql).await.expect("asof");
    let mut out = Vec::new();
    for batch in &results[0].batches {
        let k = batch.column(0).as_primitive::<Int64Type>();
        let v = batch.column(1).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            out.push((k.value(i), v.is_valid(i).then(|| v.value(i))));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_values_equal_asof_join_at_now_across_paths_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 200i64;
    let mut expected: HashMap<i64, (i64, f64)> = HashMap::new();
    {
        let session = Session::open(dir.path()).await.expect("open");
        run(
            &session,
            "CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t ONLINE",
        )
        .await;
        let mut rng = Lcg(42);
        // Distinct event times per key (ties have their own test in the .slt).
        let mut used: HashMap<i64, Vec<i64>> = HashMap::new();
        for round in 0..12 {
            let rows: Vec<(i64, i64, f64)> = (0..40)
                .filter_map(|i| {
                    let k = rng.next(n as u64) as i64;
                    let t = rng.next(10_000) as i64;
                    let seen = used.entry(k).or_default();
                    if seen.contains(&t) {
                        return None;
                    }
                    seen.push(t);
                    Some((k, t, (round * 1000 + i) as f64))
                })
                .collect();
            keep_latest(&mut expected, &rows);
            let values = values_sql(&rows, "minutes");
            if round % 3 == 0 {
                // Batch path: one snapshot, then the online store catches up.
                run(
                    &session,
                    &format!(
                        "INSERT INTO fg SELECT * FROM (VALUES {}) AS x(k, t, v)",
                        values
                    ),
                )
                .await;
            } else {
                // Stream path: logged, online at once, committed later.
                run(&session, &format!("INSERT INTO fg VALUES {}", values)).await;
            }
            if round == 5 {
                // The first lookup builds the group from the table and the log.
                assert_eq!(
                    online_values(&session, n).await,
                    asof_values(&session, n).await
                );
            }
        }
        let want: Vec<(i64, Option<f64>)> = (0..n)
            .chain([n + 1000])
            .map(|k| (k, expected.get(&k).map(|e| e.1)))
            .collect();
        assert_eq!(online_values(&session, n).await, want);
        assert_eq!(asof_values(&session, n).await, want);
        session
            .store()
            .streams()
            .close()
            .await
            .expect("commit the stream");
        let rows: usize = expected.len();
        assert!(rows > 0);
    }
    // A new process (here: a new warehouse handle) rebuilds from Iceberg.
    let session = reopen(dir.path()).await;
    let want: Vec<(i64, Option<f64>)> = (0..n)
        .chain([n + 1000])
        .map(|k| (k, expected.get(&k).map(|e| e.1)))
        .collect();
    assert_eq!(online_values(&session, n).await, want);
    // Every streamed row reached Iceberg exactly once.
    let snapshots = one_cell(
        &session,
        "SELECT count(*) FROM \"fg$snapshots\" WHERE summary['pitlake.operation'] = 'stream'",
    )
    .await;
    assert!(snapshots.parse::<i64>().expect("count") >= 1, "{snapshots}");
}

/// Opens the warehouse again once the previous handle's log is released.
async fn reopen(dir: &std::path::Path) -> Session {
    for _ in 0..50 {
        let session = Session::open(dir).await.expect("open");
        session.store().streams().recover().await.expect("recover");
        // The log opened (the previous handle let go of it).
        let status = session.store().streams().status().expect("status");
        if status.num_rows() == 1 {
            return session;
        }
        drop(session);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the stream log stayed locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_rows_survive_a_restart_without_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let session = Session::open(dir.path()).await.expect("open");
        hold_commits(&session);
        run(
            &session,
            "CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t ONLINE",
        )
        .await;
        for i in 0..20 {
            run(
                &session,
                &format!("INSERT INTO fg VALUES ({i}, TIMESTAMP '2024-01-01 00:00:00', {i}.5)"),
            )
            .await;
        }
        assert_eq!(one_cell(&session, "SELECT count(*) FROM fg").await, "20");
        // Nothing committed yet: pyiceberg and other engines see no rows.
        assert_eq!(
            one_cell(&session, "SELECT count(*) FROM \"fg$snapshots\"").await,
            "0"
        );
        // Dropped without closing: like a crash after the acknowledgements.
    }
    let session = reopen(dir.path()).await;
    flush(&session).await;
    assert_eq!(one_cell(&session, "SELECT count(*) FROM fg").await, "20");
    assert_eq!(
        one_cell(&session, "SELECT count(DISTINCT k) FROM fg").await,
        "20"
    );
    assert_eq!(
        one_cell(&session, "SELECT count(*) FROM \"fg$snapshots\"").await,
        "1"
    );
    // Opening once more replays nothing: the commit recorded the log range.
    drop(session);
    let session = reopen(dir.path()).await;
    flush(&session).await;
    assert_eq!(one_cell(&session, "SELECT count(*) FROM fg").await, "20");
    let keys: ArrayRef = Arc::new(Int64Array::from(vec![7, 100]));
    let batch = session
        .online_lookup("default.fg", &[keys], None)
        .await
        .expect("lookup");
    let v = batch.column(2).as_primitive::<Float64Type>();
    assert_eq!((v.value(0), v.is_null(1)), (7.5, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_go_to_the_most_recently_ingested_row_in_asof_and_online() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    run(
        &session,
        "CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t ONLINE",
    )
    .await;
    let n = 50i64;
    let mut rng = Lcg(7);
    // (time, value) of the winner per key: greatest time, then last ingested.
    let mut expected: HashMap<i64, (i64, f64)> = HashMap::new();
    for write in 0..15 {
        // Few distinct times, so ties are common; values sort randomly.
        let rows: Vec<(i64, i64, f64)> = (0..60)
            .map(|_| {
                (
                    rng.next(n as u64) as i64,
                    rng.next(3) as i64,
                    rng.next(1000) as f64 + write as f64 / 100.0,
                )
            })
            .collect();
        keep_latest(&mut expected, &rows);
        let values = values_sql(&rows, "days");
        // Batch writes: one snapshot (one data file) each.
        run(
            &session,
            &format!(
                "INSERT INTO fg SELECT * FROM (VALUES {}) AS x(k, t, v)",
                values
            ),
        )
        .await;
    }
    let want: Vec<(i64, Option<f64>)> = (0..n)
        .chain([n + 1000])
        .map(|k| (k, expected.get(&k).map(|e| e.1)))
        .collect();
    assert_eq!(asof_values(&session, n).await, want);
    assert_eq!(online_values(&session, n).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_to_one_group_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .store()
        .streams()
        .set_policy(pitlake::ingest::stream::CommitPolicy {
            interval: Duration::from_millis(50),
            rows: 100,
            ..Default::default()
        });
    run(
        &session,
        "CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t ONLINE",
    )
    .await;
    // 8 writers: streamed INSERTs, and batch INSERT ... SELECTs, at once.
    let mut writers = Vec::new();
    for w in 0..8i64 {
        let session = session.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25i64 {
                let k = w * 1000 + i;
                let sql = if w % 4 == 3 {
                    format!("INSERT INTO fg SELECT {k}, TIMESTAMP '2024-01-01 00:00:00', {w}.5")
                } else {
                    format!("INSERT INTO fg VALUES ({k}, TIMESTAMP '2024-01-01 00:00:00', {w}.5)")
                };
                session
                    .sql(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    flush(&session).await;
    assert_eq!(one_cell(&session, "SELECT count(*) FROM fg").await, "200");
    assert_eq!(
        one_cell(&session, "SELECT count(DISTINCT k) FROM fg").await,
        "200"
    );
    // Committed: a fresh handle (what pyiceberg would see) has them all.
    let other = Session::open(dir.path()).await.expect("open");
    assert_eq!(one_cell(&other, "SELECT count(*) FROM fg").await, "200");
    let keys: ArrayRef = Arc::new(Int64Array::from(vec![0, 3024, 7024, 99]));
    let batch = session
        .online_lookup("fg", &[keys], Some(&["v".to_string()]))
        .await
        .expect("lookup");
    let v: Vec<Option<f64>> = batch
        .column(1)
        .as_primitive::<Float64Type>()
        .iter()
        .collect();
    assert_eq!(v, vec![Some(0.5), Some(3.5), Some(7.5), None]);
}

/// Commits every stream's acknowledged records now.
async fn flush(session: &Session) {
    session.store().streams().flush(None).await.expect("flush");
}
