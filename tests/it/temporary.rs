//! Temporary tables under abuse: a client filling memory with them, sessions
//! that must not see each other's, memory given back when a session ends.

use pitlake::output::cells;
use pitlake::{Error, Session};

async fn one_cell(session: &Session, sql: &str) -> String {
    let results = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    cells(&results[0].batches).expect("cells")[0][0].clone()
}

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
