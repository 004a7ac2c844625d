//! The small-query path keeps what it learnt between statements (the name
//! listing, loaded tables, plans of queries), valid while the catalog's
//! version holds. These tests abuse it: another process (the real `pitlake
//! sql` binary) creates, writes and drops tables between two statements of
//! a server's client, which must see each change at its next statement;
//! settings that change how SQL is planned forget kept plans; clients
//! running the same prepared statement at once each get their own rows.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use pitlake::Session;
use pitlake::output::cells;
use tonic::transport::Channel;

use crate::flight::{query, update};
use crate::stream_kill::ServeProcess;

fn pitlake_sql(warehouse: &Path, sql: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_pitlake"))
        .arg("sql")
        .arg("--warehouse")
        .arg(warehouse)
        .args(["-c", sql])
        .output()
        .expect("run pitlake sql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The statement's error text (it must fail).
async fn query_error(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> String {
    let result = async {
        let info = client.execute(sql.to_string(), None).await?;
        let ticket = info.endpoint[0].ticket.clone().expect("ticket");
        client
            .do_get(ticket)
            .await?
            .try_collect::<Vec<RecordBatch>>()
            .await
    }
    .await;
    match result {
        Ok(batches) => panic!("{sql} did not fail: {:?}", cells(&batches)),
        Err(e) => e.to_string(),
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    cells(batches).expect("cells")
}

/// Executes a prepared statement with one BIGINT parameter.
pub async fn run_prepared(
    prepared: &mut arrow_flight::sql::client::PreparedStatement<Channel>,
    client: &mut FlightSqlServiceClient<Channel>,
    value: i64,
) -> Result<Vec<RecordBatch>, arrow_flight::error::FlightError> {
    let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![value]))])
        .expect("parameters");
    prepared.set_parameters(batch)?;
    let info = prepared.execute().await?;
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    client.do_get(ticket).await?.try_collect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_changes_are_seen_by_the_next_statement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    std::fs::create_dir_all(&warehouse).expect("warehouse");
    let server = ServeProcess::start(&warehouse, &[]);
    let mut client = server.client().await;
    update(
        &mut client,
        "CREATE FEATURE GROUP g (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t ONLINE",
    )
    .await;
    update(
        &mut client,
        "INSERT INTO g VALUES (1, TIMESTAMP '2024-01-01 00:00:00', 0.5)",
    )
    .await;
    // Warm every cache: listings, tables, kept plans.
    for _ in 0..3 {
        assert_eq!(rows(&query(&mut client, "SELECT 1 AS one").await)[0], ["1"]);
        assert_eq!(
            rows(&query(&mut client, "SELECT v FROM online.default.g WHERE k = 1").await),
            [["0.5"]]
        );
        assert_eq!(
            rows(&query(&mut client, "SELECT count(*) FROM g").await),
            [["1"]]
        );
    }
    let mut prepared = client
        .clone()
        .prepare("SELECT v FROM online.default.g WHERE k = ?".into(), None)
        .await
        .expect("prepare");
    let got = run_prepared(&mut prepared, &mut client, 1)
        .await
        .expect("prepared");
    assert_eq!(rows(&got), [["0.5"]]);

    // A table created and written by another process, in a new schema.
    pitlake_sql(
        &warehouse,
        "CREATE SCHEMA other; CREATE TABLE other.t (x BIGINT); INSERT INTO other.t VALUES (7)",
    );
    assert_eq!(
        rows(&query(&mut client, "SELECT x FROM other.t").await),
        [["7"]]
    );
    let listed = rows(
        &query(
            &mut client,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'other'",
        )
        .await,
    );
    assert_eq!(listed, [["t"]]);

    // Written again by the other process: the next count sees it.
    pitlake_sql(&warehouse, "INSERT INTO other.t VALUES (8)");
    assert_eq!(
        rows(&query(&mut client, "SELECT count(*) FROM other.t").await),
        [["2"]]
    );
    pitlake_sql(
        &warehouse,
        "INSERT INTO g VALUES (2, TIMESTAMP '2024-01-01 00:00:00', 1.5)",
    );
    assert_eq!(
        rows(&query(&mut client, "SELECT count(*) FROM g").await),
        [["2"]]
    );

    // Dropped by the other process: gone at the next statement.
    pitlake_sql(&warehouse, "DROP TABLE other.t");
    let err = query_error(&mut client, "SELECT x FROM other.t").await;
    assert!(err.contains("other.t"), "{err}");

    // The online group dropped by the other process: the kept plans of
    // its lookup (plain and prepared) fail instead of answering from it.
    pitlake_sql(&warehouse, "DROP FEATURE GROUP g");
    let err = query_error(&mut client, "SELECT v FROM online.default.g WHERE k = 1").await;
    assert!(err.contains("g"), "{err}");
    let err = run_prepared(&mut prepared, &mut client, 1)
        .await
        .expect_err("the group is gone");
    assert!(err.to_string().contains("g"), "{err}");
    // SELECT 1 is unaffected.
    assert_eq!(rows(&query(&mut client, "SELECT 1 AS one").await)[0], ["1"]);
    // Not stopped with SIGTERM: a server whose online group another process
    // dropped does not finish its shutdown (so before these caches too);
    // dropping `server` kills it.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_forget_kept_plans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[]);
    let mut client = server.client().await;
    let name = |batches: &[RecordBatch]| batches[0].schema().field(0).name().clone();
    for _ in 0..2 {
        assert_eq!(
            name(&query(&mut client, "SELECT 1 AS Answer").await),
            "answer"
        );
    }
    update(
        &mut client,
        "SET datafusion.sql_parser.enable_ident_normalization = false",
    )
    .await;
    assert_eq!(
        name(&query(&mut client, "SELECT 1 AS Answer").await),
        "Answer"
    );
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_run_one_prepared_lookup_each_with_their_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[]);
    let mut setup = server.client().await;
    update(
        &mut setup,
        "CREATE FEATURE GROUP g (k BIGINT, t TIMESTAMP, v BIGINT) ENTITY KEY (k) EVENT TIME t ONLINE",
    )
    .await;
    update(
        &mut setup,
        "INSERT INTO g SELECT value, TIMESTAMP '2024-01-01 00:00:00', value * 10 FROM generate_series(0, 99) AS s(value)",
    )
    .await;
    let mut tasks = Vec::new();
    for c in 0..4i64 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut prepared = client
                .clone()
                .prepare("SELECT k, v FROM online.default.g WHERE k = ?".into(), None)
                .await
                .expect("prepare");
            for i in 0..40i64 {
                let k = (c * 25 + i * 7) % 100;
                let got = run_prepared(&mut prepared, &mut client, k)
                    .await
                    .expect("prepared");
                assert_eq!(rows(&got), [[k.to_string(), (k * 10).to_string()]]);
                let sql = format!("SELECT k, v FROM online.default.g WHERE k = {k}");
                assert_eq!(
                    rows(&query(&mut client, &sql).await),
                    [[k.to_string(), (k * 10).to_string()]]
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    drop(setup);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_plans_hold_while_the_catalog_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("session");
    session
        .sql("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (1)")
        .await
        .expect("setup");
    let first = session.plan_query("SELECT 1").await.expect("plan");
    let again = session.plan_query("SELECT 1").await.expect("plan");
    assert!(
        Arc::ptr_eq(
            first.as_ref().expect("a query"),
            again.as_ref().expect("a query")
        ),
        "SELECT 1 is planned once"
    );
    // A scan of an Iceberg table holds its snapshot: planned every time.
    let scan = session.plan_query("SELECT x FROM t").await.expect("plan");
    assert!(
        session
            .kept_plan("SELECT x FROM t")
            .await
            .expect("kept")
            .is_none()
    );
    assert!(scan.is_some());
    // Not a query: nothing to plan.
    assert!(
        session
            .plan_query("INSERT INTO t VALUES (2)")
            .await
            .expect("plan")
            .is_none()
    );
    // Another connection to the catalog (another process would do the
    // same) commits: kept plans are made again.
    let other = Session::open(dir.path()).await.expect("other session");
    other
        .sql("INSERT INTO t VALUES (2)")
        .await
        .expect("other write");
    assert!(session.kept_plan("SELECT 1").await.expect("kept").is_none());
    let result = session.sql("SELECT count(*) FROM t").await.expect("count");
    assert_eq!(rows(&result[0].batches), [["2"]]);
}

/// Which kept plans a server may answer where the request arrived: those
/// that read nothing, or look entities up in an online table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_lookups_and_plans_without_tables_are_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("session");
    session
        .sql(
            "CREATE FEATURE GROUP g (k BIGINT, t TIMESTAMP, f DOUBLE) ENTITY KEY (k) \
             EVENT TIME t ONLINE; INSERT INTO g VALUES (1, '2026-01-01', 1.0)",
        )
        .await
        .expect("setup");
    for (sql, small) in [
        ("SELECT 1", true),
        ("SELECT * FROM online.default.g WHERE k = $1", true),
        ("SELECT * FROM online.default.g WHERE k = 1", true),
        ("SELECT * FROM online.default.g", false),
        ("SELECT count(*) FROM generate_series(1, 10)", false),
        ("SELECT unnest([1, 2, 3])", false),
        (
            "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
             SELECT * FROM r",
            false,
        ),
        (
            "SELECT * FROM online.default.g WHERE k = (SELECT max(k) FROM generate_series(1, 10) s(k))",
            false,
        ),
    ] {
        let plan = session
            .plan_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .expect("a query");
        assert_eq!(plan.is_small(), small, "{sql}");
    }
}

/// Kept plans are optimized once where that gives the same answers: a
/// statement reading the clock, asked again, reads it again; parameters
/// used in the result, a list and the filter bind at every execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_plans_answer_as_planned_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[]);
    let mut client = server.client().await;
    let mut times = Vec::new();
    for _ in 0..3 {
        let now = rows(&query(&mut client, "SELECT CAST(now() AS VARCHAR)").await);
        times.push(now[0][0].clone());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        times[0] < times[1] && times[1] < times[2],
        "now() read once: {times:?}"
    );
    update(
        &mut client,
        "CREATE FEATURE GROUP g (k BIGINT, t TIMESTAMP, v BIGINT) ENTITY KEY (k) EVENT TIME t ONLINE",
    )
    .await;
    update(
        &mut client,
        "INSERT INTO g SELECT value, TIMESTAMP '2024-01-01 00:00:00', value * 10 FROM generate_series(0, 9) AS s(value)",
    )
    .await;
    let mut prepared = client
        .clone()
        .prepare(
            "SELECT k, v + $1 AS w FROM online.default.g WHERE k IN ($1, 9) ORDER BY k".into(),
            None,
        )
        .await
        .expect("prepare");
    for k in [3i64, 5, 9, 42] {
        let got = run_prepared(&mut prepared, &mut client, k)
            .await
            .expect("prepared");
        // One row per entity asked for, NULL features for one not there.
        let mut keys = vec![k, 9];
        keys.sort();
        keys.dedup();
        let want: Vec<[String; 2]> = keys
            .iter()
            .map(|&e| {
                let w = if e < 10 {
                    (e * 10 + k).to_string()
                } else {
                    "NULL".to_string()
                };
                [e.to_string(), w]
            })
            .collect();
        assert_eq!(rows(&got), want, "k = {k}");
    }
    // The optimizer would take `$1` for a value unlike 2 (and drop the
    // second condition, or intersect the lists wrongly) if it ran before
    // the value was bound.
    for (sql, value, want) in [
        (
            "SELECT k FROM online.default.g WHERE k = $1 AND k = 2",
            1,
            vec![],
        ),
        (
            "SELECT k FROM online.default.g WHERE k = $1 AND k = 2",
            2,
            vec![["2"]],
        ),
        (
            "SELECT x FROM (VALUES (1), (2), (3), (4)) t(x) WHERE x IN ($1, 3) AND x IN (2, 3) ORDER BY x",
            2,
            vec![["2"], ["3"]],
        ),
        // `$1 = $1` alone tells no type; the other use does.
        (
            "SELECT k FROM online.default.g WHERE k = $1 AND $1 = $1",
            3,
            vec![["3"]],
        ),
    ] {
        let mut prepared = client
            .clone()
            .prepare(sql.into(), None)
            .await
            .expect("prepare");
        for _ in 0..2 {
            let got = run_prepared(&mut prepared, &mut client, value)
                .await
                .expect("prepared");
            assert_eq!(rows(&got), want, "{sql} with {value}");
        }
    }
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}
