//! Compaction keeps what a table reads: a streamed group compacted in the
//! background stays at a few files and manifests, every row (and every
//! snapshot, as pyiceberg reads it) is as before, and ASOF JOIN and the
//! online store still break ties between rows of one key and event time by
//! ingestion order.

use std::time::Duration;

use pitlake::Session;
use pitlake::output::cells;

use crate::interop::query;
use crate::schema_evolution::every_snapshot_agrees;

async fn one(session: &Session, sql: &str) -> String {
    cells(&query(session, sql).await).expect("cells")[0][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_group_compacted_in_the_background_reads_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .store()
        .streams()
        .set_policy(pitlake::ingest::stream::CommitPolicy {
            interval: Duration::from_secs(3600),
            rows: usize::MAX,
            compact_every: 10,
            ..Default::default()
        });
    query(
        &session,
        "CREATE FEATURE GROUP fg (k BIGINT NOT NULL, t TIMESTAMP NOT NULL, v BIGINT)
             ENTITY KEY (k) EVENT TIME t ONLINE",
    )
    .await;
    // 41 commits of one row each; every key's rows share one event time,
    // so each later row ties with the earlier ones and must win (for keys
    // 1 to 3, within the last compaction's file).
    for i in 0..41 {
        query(
            &session,
            &format!("INSERT INTO fg VALUES ({}, '2024-01-01', {i})", i % 4),
        )
        .await;
        session
            .store()
            .streams()
            .flush(Some("default.fg"))
            .await
            .expect("commit");
    }
    let snapshots = one(&session, "SELECT count(*) FROM \"fg$snapshots\"").await;
    let compactions = one(
        &session,
        "SELECT count(*) FROM \"fg$snapshots\" WHERE operation = 'replace'",
    )
    .await;
    assert_eq!((snapshots.as_str(), compactions.as_str()), ("45", "4"));
    // The fortieth commit's compaction left one file; one commit came after.
    assert_eq!(
        one(&session, "SELECT count(*) FROM \"fg$files\"").await,
        "2"
    );
    assert_eq!(one(&session, "SELECT count(*) FROM fg").await, "41");
    let latest = vec![
        vec!["0", "40"],
        vec!["1", "37"],
        vec!["2", "38"],
        vec!["3", "39"],
    ];
    let online = query(
        &session,
        "SELECT k, v FROM online.default.fg WHERE k IN (0, 1, 2, 3) ORDER BY k",
    )
    .await;
    assert_eq!(cells(&online).expect("cells"), latest);
    query(
        &session,
        "CREATE TABLE labels (k BIGINT, at TIMESTAMP);
         INSERT INTO labels VALUES (0, '2024-02-01'), (1, '2024-02-01'), (2, '2024-02-01'), (3, '2024-02-01')",
    )
    .await;
    let asof = query(
        &session,
        "SELECT l.k, f.v FROM labels l ASOF JOIN fg f MATCH_CONDITION (l.at >= f.t) ON l.k = f.k ORDER BY l.k",
    )
    .await;
    assert_eq!(cells(&asof).expect("cells"), latest);
    // Reopened: the online store is built again from the compacted files.
    drop(session);
    let session = Session::open(dir.path()).await.expect("reopen");
    let online = query(
        &session,
        "SELECT k, v FROM online.default.fg WHERE k IN (0, 1, 2, 3) ORDER BY k",
    )
    .await;
    assert_eq!(cells(&online).expect("cells"), latest);
    assert_eq!(every_snapshot_agrees(&session, "default.fg").await, 45);
}
