//! Time travel is never silently ignored, whatever the entry point.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use pitlake::Session;
use pitlake::output::cells;

/// Pins the upstream behaviour pitlake guards against: DataFusion 53 with a
/// dialect that parses `FOR SYSTEM_TIME AS OF` plans the table and drops the
/// clause, returning current rows. If this starts failing, upstream changed.
#[tokio::test]
async fn plain_datafusion_silently_drops_time_travel() {
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::BigQuery;
    let ctx = SessionContext::new_with_config(config);
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
        .expect("batch");
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("mem")),
    )
    .expect("register");
    let rows = ctx
        .sql("SELECT count(*) FROM t FOR SYSTEM_TIME AS OF '2000-01-01'")
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["2"]]);
}

/// The same clause in pitlake is honoured (an error here: before the first snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitlake_honours_or_rejects_every_clause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (1), (2); INSERT INTO t VALUES (3)")
        .await
        .expect("setup");
    let err = session
        .sql("SELECT count(*) FROM t FOR SYSTEM_TIME AS OF '2000-01-01'")
        .await
        .expect_err("before the first snapshot");
    assert!(
        err.to_string()
            .contains("has no snapshot at or before 2000-01-01"),
        "{err}"
    );

    let ids = session
        .sql("SELECT snapshot_id FROM \"t$snapshots\" ORDER BY committed_at, snapshot_id")
        .await
        .expect("snapshots");
    let ids = cells(&ids[0].batches).expect("cells");
    // Two INSERTs, two snapshots: each is read back below (an empty list
    // would check nothing).
    assert_eq!(ids.len(), 2, "snapshots: {ids:?}");
    for (id, expected) in ids.iter().zip(["2", "3"]) {
        for form in ["FOR VERSION AS OF", "VERSION AS OF"] {
            let sql = format!("SELECT count(*) FROM t {form} {}", id[0]);
            let r = session
                .sql(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(
                cells(&r[0].batches).expect("cells"),
                vec![vec![expected]],
                "{sql}"
            );
        }
    }
}

/// The Rust API: a DataFrame over a pinned snapshot, built through the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_ids_from_rust() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (1)")
        .await
        .expect("setup");
    let table = session
        .warehouse()
        .load_table("default", "t")
        .await
        .expect("load");
    let first = table.metadata().current_snapshot_id().expect("a snapshot");
    session
        .sql("INSERT INTO t VALUES (2)")
        .await
        .expect("insert");
    let r = session
        .sql(&format!("SELECT sum(x) FROM t FOR VERSION AS OF {first}"))
        .await
        .expect("time travel");
    assert_eq!(cells(&r[0].batches).expect("cells"), vec![vec!["1"]]);
}
