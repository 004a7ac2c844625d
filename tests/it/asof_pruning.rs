//! An ASOF JOIN against a feature group reads only what its labels can match:
//! the right-side filter reaches the Iceberg scan, which skips data files and
//! rows, and ties still go to the row ingested last.

use std::sync::Arc;

use datafusion::physical_plan::{ExecutionPlan, collect};
use pitlake::Session;
use pitlake::output::cells;

/// The result of `sql` on `ctx`, and the plan that ran (for its metrics).
async fn run(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> (Vec<arrow::array::RecordBatch>, Arc<dyn ExecutionPlan>) {
    let frame = pitlake::session::sql_dataframe(ctx, sql)
        .await
        .expect("plan");
    let task = frame.task_ctx();
    let plan = frame.create_physical_plan().await.expect("physical plan");
    let batches = collect(plan.clone(), Arc::new(task)).await.expect("runs");
    (batches, plan)
}

/// The right rows the plan's ASOF JOIN took in.
fn right_rows(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    if plan.name() == "AsOfJoinExec" {
        return plan
            .metrics()?
            .sum_by_name("right_rows")
            .map(|v| v.as_usize());
    }
    plan.children().into_iter().find_map(right_rows)
}

/// Feature group `fg`: three files of disjoint keys (1-1000, 1001-2000,
/// 2001-3000, `v` = the key), then a correction of key 1500 at the same
/// event time (`v` = -1), in a fourth file.
async fn three_files_and_a_correction(session: &Session) {
    let mut setup = String::from(
        "CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t;",
    );
    for (from, to) in [(1, 1000), (1001, 2000), (2001, 3000)] {
        setup.push_str(&format!(
            "INSERT INTO fg SELECT value, to_timestamp(1704067200 + value), value * 1.0 \
             FROM generate_series({from}, {to});"
        ));
    }
    setup.push_str("INSERT INTO fg VALUES (1500, to_timestamp(1704067200 + 1500), -1.0);");
    session.sql(&setup).await.expect("setup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_reads_only_the_files_its_keys_can_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path().join("warehouse"))
        .await
        .expect("open");
    three_files_and_a_correction(&session).await;

    let sql = "SELECT l.k, f.v FROM (VALUES (1500, TIMESTAMP '2025-01-01 00:00:00'), \
               (7, TIMESTAMP '2025-01-01 00:00:00')) l(k, ts) \
               ASOF JOIN fg f MATCH_CONDITION (l.ts >= f.t) ON l.k = f.k ORDER BY l.k";
    let (batches, plan) = run(session.context(), sql).await;
    assert_eq!(
        cells(&batches).expect("cells"),
        vec![vec!["7", "7.0"], vec!["1500", "-1.0"]]
    );
    // Only the three rows of keys 7 and 1500: Iceberg skips the third file
    // and drops the other rows of the two it reads (3001 without the filter).
    let read = right_rows(&plan).expect("right_rows metric");
    assert_eq!(read, 3, "right rows the join read, of 3001");
}

/// Labels of many keys: the Parquet reader filters by the keys' range (its
/// row filter would compare every row with every key), and the scan keeps
/// only the listed keys' rows itself; the correction still wins its tie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_of_many_keys_reads_only_their_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path().join("warehouse"))
        .await
        .expect("open");
    three_files_and_a_correction(&session).await;

    // 40 keys, 50 to 2000 in steps of 50.
    let sql = "SELECT count(f.v), sum(f.v) FROM \
               (SELECT value * 50 AS k, TIMESTAMP '2025-01-01 00:00:00' AS ts \
                FROM generate_series(1, 40)) l \
               ASOF JOIN fg f MATCH_CONDITION (l.ts >= f.t) ON l.k = f.k";
    let (batches, plan) = run(session.context(), sql).await;
    // 50 * (1 + ... + 40) = 41000, with 1500's correction to -1.
    assert_eq!(cells(&batches).expect("cells"), vec![vec!["40", "39499.0"]]);
    // The 40 keys' rows and the correction, not the 1951 rows of 50 to 2000.
    let read = right_rows(&plan).expect("right_rows metric");
    assert_eq!(read, 41, "right rows the join read, of 3001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_of_a_plain_table_reads_only_the_rows_its_keys_can_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path().join("warehouse"))
        .await
        .expect("open");
    let mut setup = String::from("CREATE TABLE history (k BIGINT, t TIMESTAMP, v DOUBLE);");
    for (from, to) in [(1, 1000), (1001, 2000), (2001, 3000)] {
        setup.push_str(&format!(
            "INSERT INTO history SELECT value, to_timestamp(1704067200 + value), value * 1.0 \
             FROM generate_series({from}, {to});"
        ));
    }
    session.sql(&setup).await.expect("setup");
    let sql = "SELECT l.k, f.v FROM (VALUES (1500, TIMESTAMP '2025-01-01 00:00:00'), \
               (7, TIMESTAMP '2025-01-01 00:00:00')) l(k, ts) \
               ASOF JOIN history f MATCH_CONDITION (l.ts >= f.t) ON l.k = f.k ORDER BY l.k";
    let (batches, plan) = run(session.context(), sql).await;
    assert_eq!(
        cells(&batches).expect("cells"),
        vec![vec!["7", "7.0"], vec!["1500", "1500.0"]]
    );
    let read = right_rows(&plan).expect("right_rows metric");
    assert_eq!(read, 2, "right rows the join read, of 3000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_of_a_parquet_file_decodes_only_rows_its_keys_can_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("features.parquet");
    let ctx = pitlake::session::new_context(datafusion::prelude::SessionConfig::new());
    // One row group of 3000 keys: its statistics cannot skip it.
    ctx.sql(&format!(
        "COPY (SELECT value AS k, to_timestamp(1704067200 + value) AS t, value * 1.0 AS v \
         FROM generate_series(1, 3000)) TO '{}' STORED AS PARQUET",
        file.display()
    ))
    .await
    .expect("copy")
    .collect()
    .await
    .expect("write");
    ctx.register_parquet(
        "fg",
        file.to_str().expect("path"),
        datafusion::prelude::ParquetReadOptions::default(),
    )
    .await
    .expect("register");
    let sql = "SELECT l.k, f.v FROM (VALUES (1500, TIMESTAMP '2025-01-01 00:00:00'), \
               (7, TIMESTAMP '2025-01-01 00:00:00')) l(k, ts) \
               ASOF JOIN fg f MATCH_CONDITION (l.ts >= f.t) ON l.k = f.k ORDER BY l.k";
    let (batches, plan) = run(&ctx, sql).await;
    assert_eq!(
        cells(&batches).expect("cells"),
        vec![vec!["7", "7.0"], vec!["1500", "1500.0"]]
    );
    // The scan filters rows while decoding: the join sees the two rows of
    // keys 7 and 1500, not the row group's 3000.
    let read = right_rows(&plan).expect("right_rows metric");
    assert_eq!(read, 2, "right rows the join read, of 3000");
}
