//! An ASOF JOIN against a feature group reads only what its labels can match:
//! the right-side filter reaches the Iceberg scan, which skips data files and
//! rows, and ties still go to the row ingested last. By default it holds
//! the smaller side, as the snapshots' row counts tell.

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
    join_metric(plan, "right_rows")
}

/// A metric of the plan's ASOF JOIN, summed over its partitions.
fn join_metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> Option<usize> {
    if plan.name() == "AsOfJoinExec" {
        return plan.metrics()?.sum_by_name(name).map(|v| v.as_usize());
    }
    plan.children()
        .into_iter()
        .find_map(|c| join_metric(c, name))
}

/// A metric of the plan's scan of `table` (summed over its partitions).
fn scan_metric(plan: &Arc<dyn ExecutionPlan>, table: &str, name: &str) -> Option<usize> {
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .one_line()
        .to_string();
    if plan.name() == "IngestOrderScanExec" && shown.contains(&format!("table={table},")) {
        let metrics = plan.metrics()?;
        return match name {
            "output_rows" => metrics.output_rows(),
            _ => metrics.sum_by_name(name).map(|v| v.as_usize()),
        };
    }
    plan.children()
        .into_iter()
        .find_map(|c| scan_metric(c, table, name))
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

/// Labels of many keys: the Parquet reader skips row groups by the keys'
/// range and tests each row's key against the hashed list while decoding
/// (Iceberg's row filter would compare every row with every key), so the
/// scan yields only the listed keys' rows; the correction still wins its tie.
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
    // Dropped while decoding, not after: the scan yields only those rows.
    let scanned = scan_metric(&plan, "default.fg", "output_rows").expect("output_rows");
    assert_eq!(scanned, 41, "rows the scan yielded");
    let dropped = scan_metric(&plan, "default.fg", "rows_dropped_by_filter").expect("dropped");
    assert_eq!(dropped, 0, "rows read and dropped after decoding");
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

/// A probe of many keys reads files written before the columns changed
/// (the key and a feature widened, a feature renamed, one added) with the
/// keys tested while decoding, and answers as the table is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_of_many_keys_reads_older_files_as_the_table_is_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path().join("warehouse"))
        .await
        .expect("open");
    session
        .sql(
            "CREATE FEATURE GROUP fg (k INT, t TIMESTAMP, v INT, s VARCHAR) ENTITY KEY (k) EVENT TIME t;
             INSERT INTO fg SELECT CAST(value AS INT) AS k, to_timestamp(1704067200 + value), CAST(value AS INT) AS v, 'old' || value
               FROM generate_series(1, 1000);
             ALTER FEATURE GROUP fg ALTER COLUMN k TYPE BIGINT, RENAME COLUMN v TO w, ALTER COLUMN w TYPE BIGINT;
             ALTER FEATURE GROUP fg ADD COLUMN x DOUBLE;
             INSERT INTO fg SELECT value, to_timestamp(1704067200 + 2000 + value), 3000000000 + value, 'new' || value, value * 0.5
               FROM generate_series(991, 1010);",
        )
        .await
        .expect("setup");
    // 20 keys: 980..999 step 1. Keys 991-999 have a newer row (w past
    // i32::MAX, x set); 980-990 only their first (x NULL).
    let sql = "SELECT count(f.w), sum(f.w), count(f.x), sum(f.x), min(f.s), max(f.s) FROM \
               (SELECT value AS k, TIMESTAMP '2025-01-01 00:00:00' AS ts FROM generate_series(980, 999)) l \
               ASOF JOIN fg f MATCH_CONDITION (l.ts >= f.t) ON l.k = f.k";
    let (batches, plan) = run(session.context(), sql).await;
    let old: i64 = (980..=990).sum();
    let new: i64 = (991..=999).map(|k| 3_000_000_000 + k).sum();
    let x: f64 = (991..=999).map(|k| k as f64 * 0.5).sum();
    assert_eq!(
        cells(&batches).expect("cells"),
        vec![vec![
            "20".to_string(),
            (old + new).to_string(),
            "9".to_string(),
            format!("{x:.1}"),
            "new991".to_string(),
            "old990".to_string(),
        ]]
    );
    let dropped = scan_metric(&plan, "default.fg", "rows_dropped_by_filter").expect("dropped");
    assert_eq!(dropped, 0, "rows read and dropped after decoding");
    let scanned = scan_metric(&plan, "default.fg", "output_rows").expect("output_rows");
    assert_eq!(
        scanned, 29,
        "the 20 keys' rows: 11 old, 9 old and new pairs"
    );
}

/// The cells of `sql`'s result, run as a statement of `session` (which sees
/// tables other processes made since its last statement).
async fn answer(session: &Session, sql: &str) -> Vec<Vec<String>> {
    cells(&crate::interop::query(session, sql).await).expect("cells")
}

/// Files written before a column was added read its `initial-default`
/// (which pyiceberg sets), however many keys the probe lists: Iceberg's
/// reader fills it, and the probe reader hands such files to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_reads_a_column_added_with_a_default_as_iceberg_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    let root = session.warehouse().root().display().to_string();
    crate::python::run_script("pyiceberg_default.py", &[&root]);
    // Keys 0 and 1 have a newer row with f = 1.0; the others read 7.5.
    for (keys, sum) in [(3, 1.0 + 1.0 + 7.5), (12, 2.0 + 10.0 * 7.5)] {
        let sql = format!(
            "SELECT count(f.f), sum(f.f) FROM \
             (SELECT value AS k, TIMESTAMP '2025-01-01 00:00:00' AS ts FROM generate_series(0, {})) l \
             ASOF JOIN py.defaulted f MATCH_CONDITION (l.ts >= f.t) ON l.k = f.k",
            keys - 1
        );
        assert_eq!(
            answer(&session, &sql).await,
            vec![vec![keys.to_string(), format!("{sum:.1}")]],
            "{keys} keys"
        );
    }
    // Conditions on the column keep the older files' rows, which read the
    // default (Iceberg's statistics would take those files for NULLs).
    for condition in ["f = 7.5", "f IN (7.5, 8.0)", "f > 7.0"] {
        let sql = format!("SELECT count(*) FROM py.defaulted WHERE {condition}");
        assert_eq!(
            answer(&session, &sql).await,
            vec![vec!["20"]],
            "{condition}"
        );
    }
    // And so does a DELETE: what it matches is gone.
    answer(&session, "DELETE FROM py.defaulted WHERE f = 7.5").await;
    assert_eq!(
        answer(&session, "SELECT count(*), min(f) FROM py.defaulted").await,
        vec![vec!["2", "1.0"]]
    );
    // A column dropped and added again with a default: the file's dropped
    // values are not the column's; the DELETE sees the default, as reads do.
    assert_eq!(
        answer(
            &session,
            "SELECT count(*), min(f), max(f) FROM py.readded WHERE f = 7.5"
        )
        .await,
        vec![vec!["2", "7.5", "7.5"]]
    );
    answer(&session, "DELETE FROM py.readded WHERE f = 7.5").await;
    assert_eq!(
        answer(&session, "SELECT count(*) FROM py.readded").await,
        vec![vec!["0"]]
    );
}

/// `auto` sweeps the labels past the features when the features are the
/// larger side, and indexes the features when the labels are: 6000 labels
/// against 3001 feature rows were held whole before the scan's row count
/// was known. Both answer alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_holds_the_smaller_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path().join("warehouse"))
        .await
        .expect("open");
    three_files_and_a_correction(&session).await;
    session
        .sql(
            "CREATE TABLE many (k BIGINT, ts TIMESTAMP); \
             INSERT INTO many SELECT value % 3000 + 1, to_timestamp(1704067200 + value % 3000 + value / 3000) \
             FROM generate_series(0, 5999); \
             CREATE TABLE few (k BIGINT, ts TIMESTAMP); \
             INSERT INTO few SELECT k, ts FROM many WHERE k % 20 = 0",
        )
        .await
        .expect("labels");
    for (labels, swept) in [("many", false), ("few", true)] {
        let sql = format!(
            "SELECT count(*), count(f.v), sum(f.v) FROM {labels} l \
             ASOF JOIN fg f MATCH_CONDITION (l.ts >= f.t) ON l.k = f.k"
        );
        let (batches, plan) = run(session.context(), &sql).await;
        let partitions = join_metric(&plan, "swept_partitions").expect("swept_partitions");
        assert_eq!(
            partitions > 0,
            swept,
            "{labels}: swept {partitions} partitions"
        );
        let other = if swept { "index" } else { "sweep" };
        session
            .sql(&format!("SET pitlake.asof_join_strategy = '{other}'"))
            .await
            .expect("set");
        let (forced, _) = run(session.context(), &sql).await;
        session
            .sql("SET pitlake.asof_join_strategy = 'auto'")
            .await
            .expect("set");
        assert_eq!(
            cells(&batches).expect("cells"),
            cells(&forced).expect("cells"),
            "{labels}"
        );
    }
}
