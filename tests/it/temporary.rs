//! Temporary tables under abuse: a client filling memory with them, sessions
//! that must not see each other's, memory given back when a session ends.

use crate::one_cell;
use pitlake::{Error, Session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_stay_within_their_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    let budget = session.temporary_tables().budget().clone();
    budget.set_limit(4 << 20);
    session
        .sql("CREATE TEMPORARY TABLE t AS SELECT value AS v FROM range(1000)")
        .await
        .expect("a small table fits");
    let held = budget.used();
    assert!(held > 0);

    // Past the budget: an error that says so, and nothing added.
    let err = session
        .sql("INSERT INTO t SELECT value FROM range(10000000)")
        .await
        .expect_err("ten million rows do not fit in 4 MiB");
    assert!(
        err.to_string().contains("temporary tables may hold"),
        "{err}"
    );
    assert_eq!(err.cause(), pitlake::error::Cause::Exhausted, "{err:?}");
    assert_eq!(one_cell(&session, "SELECT count(*) FROM t").await, "1000");
    assert_eq!(budget.used(), held);
    let err = session
        .sql("CREATE TEMPORARY TABLE big AS SELECT value FROM range(10000000)")
        .await
        .expect_err("does not fit");
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err:?}");
    assert!(
        session.sql("SELECT * FROM big").await.is_err(),
        "a failed CREATE left its table"
    );

    // Another client's session shares the budget but not the tables.
    let other = session.fork().await.expect("fork");
    assert!(other.sql("SELECT * FROM t").await.is_err());
    other
        .sql("CREATE TEMPORARY TABLE t AS SELECT 'mine' AS v")
        .await
        .expect("the same name in another session");
    assert_eq!(one_cell(&other, "SELECT v FROM t").await, "mine");
    assert_eq!(one_cell(&session, "SELECT count(*) FROM t").await, "1000");
    assert!(budget.used() > held);

    // A session that ends gives its memory back; so does DROP TABLE.
    drop(other);
    assert_eq!(budget.used(), held);
    session.sql("DROP TABLE t").await.expect("drop");
    assert_eq!(budget.used(), 0);
}

/// A bulk ingest that makes a temporary table and then fails (a bad batch,
/// or the budget) leaves no table: the client's retry must not be told the
/// table already exists, and the memory is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_temporary_ingest_leaves_no_table() {
    use arrow::array::{Int64Array, RecordBatch};
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    let budget = session.temporary_tables().budget().clone();
    budget.set_limit(1 << 20);
    let batch = |rows: i64| {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from_iter_values(0..rows)) as _)])
            .expect("batch")
    };
    // The second batch is past the budget.
    let input = futures::stream::iter([Ok(batch(10)), Ok(batch(1 << 20))]);
    let err = session
        .ingest(Some("temp"), "labels", true, false, input)
        .await
        .expect_err("past the budget");
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err:?}");
    assert!(
        session.sql("SELECT * FROM temp.labels").await.is_err(),
        "a failed ingest left its table"
    );
    assert_eq!(budget.used(), 0);
    // The stream itself fails.
    let input = futures::stream::iter([
        Ok(batch(10)),
        Err(Error::Invalid("the client's stream broke".into())),
    ]);
    session
        .ingest(Some("temp"), "labels", true, false, input)
        .await
        .expect_err("a broken stream");
    assert!(session.sql("SELECT * FROM temp.labels").await.is_err());
    // The retry makes it.
    let input = futures::stream::iter([Ok(batch(10))]);
    let rows = session
        .ingest(Some("temp"), "labels", true, false, input)
        .await
        .expect("the retry");
    assert_eq!(rows, 10);
    assert_eq!(
        one_cell(&session, "SELECT count(*) FROM labels").await,
        "10"
    );
}

/// A CREATE TEMPORARY TABLE AS whose statement is dropped while it runs
/// (Ctrl-C in the shell, a Flight client that goes away) leaves no table,
/// so the same statement can be run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_temporary_create_as_leaves_no_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    let slow = "CREATE TEMPORARY TABLE c AS SELECT count(*) AS n FROM range(20000000000)";
    let cancelled =
        tokio::time::timeout(std::time::Duration::from_millis(500), session.sql(slow)).await;
    assert!(cancelled.is_err(), "the statement should still be running");
    assert!(
        session.sql("SELECT * FROM c").await.is_err(),
        "a cancelled CREATE TEMPORARY TABLE AS left its table"
    );
    session
        .sql("CREATE TEMPORARY TABLE c AS SELECT 1 AS n")
        .await
        .expect("the same statement again");
    assert_eq!(session.temporary_tables().names(), vec!["c".to_string()]);
}

/// Empty temporary tables hold memory too (a wide schema is most of it):
/// making many of them runs into the budget instead of the process's memory,
/// and dropping them gives it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_temporary_tables_draw_on_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    let budget = session.temporary_tables().budget().clone();
    budget.set_limit(1 << 20);
    let columns: Vec<String> = (0..500).map(|i| format!("c{i} INT")).collect();
    let columns = columns.join(", ");
    let mut made = 0;
    let err = loop {
        match session
            .sql(&format!("CREATE TEMPORARY TABLE wide{made} ({columns})"))
            .await
        {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
        assert!(made < 1000, "a thousand tables of 500 columns fit in 1 MiB");
    };
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err:?}");
    assert!(made > 0);
    assert!(budget.used() > 0);
    for i in 0..made {
        session
            .sql(&format!("DROP TABLE wide{i}"))
            .await
            .expect("drop");
    }
    assert_eq!(budget.used(), 0);
}
