//! The online store under concurrent writers: records of one group commit
//! are acknowledged in any order, and every acknowledged row must be online
//! at once and, after a flush, equal to the offline truth (ASOF JOIN at now()).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use pitlake::Session;
use pitlake::ingest::stream::CommitPolicy;

use crate::online::Lcg;

const WRITERS: i64 = 16;
const INSERTS: i64 = 60;
/// Keys every writer writes, at few distinct event times: ties are common.
const SHARED_KEYS: u64 = 8;
const SHARED_BASE: i64 = 1_000_000;
/// 2020-01-01T00:00:00 in microseconds.
const T0: i64 = 1_577_836_800_000_000;
const DAY: i64 = 86_400_000_000;

/// `(key, days after T0, value)` rows as VALUES tuples.
fn values_sql(rows: &[(i64, i64, f64)]) -> String {
    rows.iter()
        .map(|(k, t, v)| {
            format!("({k}, TIMESTAMP '2020-01-01 00:00:00' + INTERVAL '{t} days', {v})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(event time in µs, value)` online per key (`None`: no value).
async fn online(session: &Session, keys: &[i64]) -> Vec<Option<(i64, f64)>> {
    let array: ArrayRef = Arc::new(Int64Array::from(keys.to_vec()));
    let batch = session
        .online_lookup("fg", &[array], Some(&["t".to_string(), "v".to_string()]))
        .await
        .expect("lookup");
    let t = batch.column(1).as_primitive::<TimestampMicrosecondType>();
    let v = batch.column(2).as_primitive::<Float64Type>();
    (0..batch.num_rows())
        .map(|i| (v.is_valid(i) && t.is_valid(i)).then(|| (t.value(i), v.value(i))))
        .collect()
}

/// Key → value from query results of `(k BIGINT, v DOUBLE)`.
fn by_key(batches: &[RecordBatch]) -> BTreeMap<i64, Option<f64>> {
    let mut out = BTreeMap::new();
    for batch in batches {
        let k = batch.column(0).as_primitive::<Int64Type>();
        let v = batch.column(1).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            out.insert(k.value(i), v.is_valid(i).then(|| v.value(i)));
        }
    }
    out
}

/// Each writer inserts rows (a key of its own, and shared keys) with
/// `INSERT ... VALUES` and looks them up right after; commits run often, so
/// catch-ups race with the acknowledgements. Every acknowledged row must be
/// online at once, and after a flush every key's online value must be the
/// one ASOF JOIN at now() gives (greatest event time, then last ingested).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_see_their_rows_online_and_online_equals_asof_at_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session.store().streams().set_policy(CommitPolicy {
        interval: Duration::from_millis(30),
        rows: 200,
        ..Default::default()
    });
    session
        .sql("CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t ONLINE")
        .await
        .expect("create");
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let session = session.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = Lcg(w as u64 + 1);
            let mut failures = Vec::new();
            for i in 0..INSERTS {
                let value = (w * INSERTS + i) as f64;
                let own = (w * 10_000 + i, rng.next(1_000) as i64, value);
                let mut rows = vec![own];
                for j in 0..2 {
                    let key = SHARED_BASE + rng.next(SHARED_KEYS) as i64;
                    rows.push((key, rng.next(3) as i64, value + (j + 1) as f64 / 10.0));
                }
                let sql = format!("INSERT INTO fg VALUES {}", values_sql(&rows));
                session
                    .sql(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let keys: Vec<i64> = rows.iter().map(|r| r.0).collect();
                let got = online(&session, &keys).await;
                // Its own key: exactly the row written.
                if got[0] != Some((T0 + own.1 * DAY, own.2)) {
                    failures.push(format!(
                        "key {} read {:?} after writing {own:?}",
                        own.0, got[0]
                    ));
                }
                // Shared keys: a value at least as recent as the one written.
                for (row, got) in rows.iter().zip(&got).skip(1) {
                    if !got.is_some_and(|(t, _)| t >= T0 + row.1 * DAY) {
                        failures.push(format!("key {} read {got:?} after writing {row:?}", row.0));
                    }
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for writer in writers {
        failures.extend(writer.await.expect("writer"));
    }
    session.store().streams().flush(None).await.expect("flush");
    let count = session.sql("SELECT count(*) FROM fg").await.expect("count");
    let rows = count[0].batches[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(rows, WRITERS * INSERTS * 3, "rows committed");

    let asof = session
        .sql(
            "WITH probe AS (SELECT DISTINCT k, now() AS ts FROM fg)
             SELECT p.k, f.v FROM probe p ASOF JOIN fg f MATCH_CONDITION (p.ts >= f.t) ON p.k = f.k",
        )
        .await
        .expect("asof");
    let truth = by_key(&asof[0].batches);
    assert_eq!(
        truth.len() as u64,
        (WRITERS * INSERTS) as u64 + SHARED_KEYS,
        "keys written"
    );
    let keys: Vec<i64> = truth.keys().copied().collect();
    let online: BTreeMap<i64, Option<f64>> = keys
        .iter()
        .copied()
        .zip(
            online(&session, &keys)
                .await
                .into_iter()
                .map(|r| r.map(|(_, v)| v)),
        )
        .collect();
    let wrong: Vec<String> = keys
        .iter()
        .filter(|k| online[k] != truth[k])
        .map(|k| format!("key {k}: online {:?}, ASOF {:?}", online[k], truth[k]))
        .collect();
    assert!(
        failures.is_empty() && wrong.is_empty(),
        "{} reads right after an acknowledgement were wrong: {:?}\n{} of {} keys differ from ASOF JOIN at now() after a flush: {:?}",
        failures.len(),
        failures.iter().take(10).collect::<Vec<_>>(),
        wrong.len(),
        keys.len(),
        wrong.iter().take(10).collect::<Vec<_>>()
    );
}
