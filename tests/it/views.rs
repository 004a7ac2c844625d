//! Views under abuse: names that are not plain identifiers, views that use
//! other views many times over, and views made to use themselves.

use crate::one_cell;
use std::time::{Duration, Instant};

use pitlake::{Error, Session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_named_like_keywords_or_with_dashes_take_column_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    for name in ["\"my-view\"", "\"order\"", "\"MixedCase\""] {
        session
            .sql(&format!("CREATE VIEW {name} (a, b) AS SELECT 1, 'x'"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            one_cell(&session, &format!("SELECT b FROM {name}")).await,
            "x"
        );
    }
}

/// Each view uses the one below it four times: a statement over the top one
/// would hold 4^depth copies of the bottom one's query. It is refused with a
/// clear error, quickly, and the server's session keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_that_multiply_are_refused_before_they_hold_the_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql("CREATE VIEW v0 AS SELECT 1 AS x")
        .await
        .expect("v0");
    let started = Instant::now();
    let mut refused = None;
    for level in 1..=12 {
        let below = format!("v{}", level - 1);
        let sql = format!(
            "CREATE VIEW v{level} AS SELECT x FROM {below} UNION ALL SELECT x FROM {below} \
             UNION ALL SELECT x FROM {below} UNION ALL SELECT x FROM {below}"
        );
        match session.sql(&sql).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((level, e));
                break;
            }
        }
    }
    let (level, err) = refused.expect("some level is refused");
    assert!(matches!(err, Error::TooComplex(_)), "{err:?}");
    assert!(err.to_string().contains("uses views more than"), "{err}");
    assert!(level >= 4, "small views are fine: refused at level {level}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(one_cell(&session, "SELECT count(*) FROM v3").await, "64");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_is_never_replaced_by_one_that_uses_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql("CREATE VIEW a AS SELECT 1 AS x")
        .await
        .expect("a");
    session
        .sql("CREATE VIEW b AS SELECT x FROM a UNION ALL SELECT x FROM a")
        .await
        .expect("b");
    for sql in [
        "CREATE OR REPLACE VIEW a AS SELECT * FROM a",
        "CREATE OR REPLACE VIEW a AS SELECT x FROM b UNION ALL SELECT x FROM b",
    ] {
        let err = session.sql(sql).await.expect_err(sql);
        assert!(
            err.to_string().contains("view default.a would use itself"),
            "{sql}: {err}"
        );
    }
    assert_eq!(one_cell(&session, "SELECT count(*) FROM b").await, "2");
}

/// A `metadata_location` changed in catalog.db by hand (or by a hostile
/// writer of the catalog) never makes pitlake read or delete a file outside
/// the view's own folder: reading the view says so, DROP VIEW removes only
/// the catalog row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_view_location_reaches_no_file_outside_its_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql("CREATE VIEW v AS SELECT 1 AS x")
        .await
        .expect("v");
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim.metadata.json");
    let view_dir = dir.path().join("default").join("v").join("metadata");
    let real = std::fs::read_dir(&view_dir)
        .expect("the view's folder")
        .next()
        .expect("its metadata file")
        .expect("entry")
        .path();
    std::fs::copy(&real, &victim).expect("a valid metadata file outside");
    let db = format!("sqlite:{}", dir.path().join("catalog.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.expect("catalog.db");
    for location in [
        format!("file://{}", victim.display()),
        victim.display().to_string(),
        format!(
            "file://{}/../../../{}",
            view_dir.display(),
            victim.strip_prefix("/").expect("absolute").display()
        ),
    ] {
        sqlx::query("UPDATE iceberg_tables SET metadata_location = ? WHERE table_name = 'v'")
            .bind(&location)
            .execute(&pool)
            .await
            .expect("tamper");
        let err = session.sql("SELECT * FROM v").await.expect_err(&location);
        assert!(
            err.to_string().contains("is outside the view's folder"),
            "{location}: {err}"
        );
        assert_eq!(err.cause(), pitlake::error::Cause::Corrupt, "{err:?}");
    }
    session.sql("DROP VIEW v").await.expect("drop the row");
    assert!(victim.exists(), "DROP VIEW deleted a file outside the view");
    assert!(session.sql("SELECT * FROM v").await.is_err());
    pool.close().await;
}
