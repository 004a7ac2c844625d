//! Column changes as other engines and pitlake's own paths see them: every
//! snapshot reads the same in pyiceberg and pitlake across ADD, RENAME,
//! widening and DROP; a change pyiceberg commits without a snapshot shows in
//! pitlake at once; streamed rows logged before a change commit after it.

use std::fs::File;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitlake::Session;
use pitlake::output::cells;

use crate::interop::{query, sorted_rows};
use crate::online::hold_commits;
use crate::python::run_script;

/// Every snapshot of `table` as pyiceberg and DuckDB scan it and as
/// pitlake's `FOR VERSION AS OF` does: the same rows, the same columns.
pub(crate) async fn every_snapshot_agrees(session: &Session, table: &str) -> usize {
    let out = tempfile::tempdir().expect("tempdir");
    let root = session.warehouse().root().display().to_string();
    let printed = run_script(
        "pyiceberg_read.py",
        &[&root, table, &out.path().display().to_string()],
    );
    let (_, printed) = printed.split_once('\n').expect("the table list");
    let ids: Vec<i64> = printed
        .lines()
        .map(|l| l.trim().parse().expect("snapshot id"))
        .collect();
    let read = |path: std::path::PathBuf| -> Vec<RecordBatch> {
        let file = File::open(path).expect("a scan");
        ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("batches")
    };
    let names = |b: &[RecordBatch]| -> Vec<String> {
        b.first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    for id in &ids {
        let ours = query(
            session,
            &format!("SELECT * FROM {table} FOR VERSION AS OF {id}"),
        )
        .await;
        for (engine, file) in [
            ("pyiceberg", format!("{id}.parquet")),
            ("DuckDB", format!("{id}.duckdb.parquet")),
        ] {
            let theirs = read(out.path().join(file));
            assert_eq!(
                names(&theirs),
                names(&ours),
                "snapshot {id}: {engine}'s columns"
            );
            assert_eq!(
                sorted_rows(&theirs),
                sorted_rows(&ours),
                "snapshot {id}: {engine} and pitlake disagree"
            );
        }
    }
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_and_pitlake_agree_on_every_snapshot_across_column_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql(
            "CREATE SCHEMA s;
             CREATE FEATURE GROUP s.fg (k INT NOT NULL, t TIMESTAMP NOT NULL, a REAL, b VARCHAR, c BIGINT)
                 ENTITY KEY (k) EVENT TIME t;
             INSERT INTO s.fg VALUES (1, '2024-01-01', 0.5, 'x', 10), (2, '2024-01-01', 1.5, 'y', 20);
             ALTER FEATURE GROUP s.fg ADD COLUMN d VARCHAR COMMENT 'added';
             INSERT INTO s.fg VALUES (1, '2024-02-01', 2.5, 'z', 30, 'new');
             ALTER TABLE s.fg RENAME COLUMN b TO label, ALTER COLUMN a TYPE DOUBLE, ALTER COLUMN k TYPE BIGINT;
             INSERT INTO s.fg VALUES (3, '2024-03-01', 3.5, 'w', 40, NULL);
             ALTER TABLE s.fg DROP COLUMN c;
             DELETE FROM s.fg WHERE k = 2;
             INSERT INTO s.fg VALUES (4, '2024-04-01', 4.5, 'v', 'last');",
        )
        .await
        .expect("pitlake writes and changes columns");
    assert_eq!(every_snapshot_agrees(&session, "s.fg").await, 5);
    let current = query(&session, "SELECT * FROM s.fg ORDER BY k, t").await;
    assert_eq!(
        cells(&current).expect("cells"),
        vec![
            vec!["1", "2024-01-01T00:00:00", "0.5", "x", "NULL"],
            vec!["1", "2024-02-01T00:00:00", "2.5", "z", "new"],
            vec!["3", "2024-03-01T00:00:00", "3.5", "w", "NULL"],
            vec!["4", "2024-04-01T00:00:00", "4.5", "v", "last"],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_pyiceberg_commits_without_a_snapshot_shows_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql(
            "CREATE SCHEMA s;
             CREATE TABLE s.t (id BIGINT, n INT, score DOUBLE);
             INSERT INTO s.t VALUES (1, 7, 0.5), (2, 8, 1.5);",
        )
        .await
        .expect("pitlake writes");
    let root = session.warehouse().root().display().to_string();
    run_script("pyiceberg_evolve.py", &[&root, "s.t"]);
    // No new snapshot, new columns: read, filtered, and written to at once.
    let current = query(&session, "SELECT * FROM s.t WHERE points > 1 ORDER BY id").await;
    assert_eq!(
        cells(&current).expect("cells"),
        vec![vec!["2", "8", "1.5", "NULL"]]
    );
    let types = query(&session, "SELECT arrow_typeof(n) FROM s.t LIMIT 1").await;
    assert_eq!(cells(&types).expect("cells"), vec![vec!["Int64"]]);
    query(
        &session,
        "INSERT INTO s.t VALUES (3, 5000000000, 2.5, 'wide')",
    )
    .await;
    query(&session, "ALTER TABLE s.t DROP COLUMN points").await;
    let current = query(&session, "SELECT * FROM s.t ORDER BY id").await;
    assert_eq!(
        cells(&current).expect("cells"),
        vec![
            vec!["1", "7", "NULL"],
            vec!["2", "8", "NULL"],
            vec!["3", "5000000000", "wide"],
        ]
    );
    assert_eq!(every_snapshot_agrees(&session, "s.t").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_rows_logged_before_a_change_commit_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    // Nothing commits on its own: the records wait in the log.
    hold_commits(&session);
    session
        .sql(
            "CREATE FEATURE GROUP fg (k BIGINT NOT NULL, t TIMESTAMP NOT NULL, a DOUBLE, gone VARCHAR, n INT)
                 ENTITY KEY (k) EVENT TIME t ONLINE;
             INSERT INTO fg VALUES (1, '2024-01-01', 0.5, 'x', 1);
             INSERT INTO fg VALUES (2, '2024-01-01', 1.5, 'y', 2);",
        )
        .await
        .expect("streamed");
    let snapshots = query(&session, "SELECT count(*) FROM \"fg$snapshots\"").await;
    assert_eq!(cells(&snapshots).expect("cells"), vec![vec!["0"]]);

    session
        .sql(
            "ALTER FEATURE GROUP fg RENAME COLUMN a TO amount, DROP COLUMN gone, \
                 ALTER COLUMN n TYPE BIGINT, ADD COLUMN extra VARCHAR;
             INSERT INTO fg VALUES (3, '2024-01-02', 2.5, 3, 'new');",
        )
        .await
        .expect("changed while records wait");
    // Before and after the commit, the rows read with the columns as now.
    let expected = vec![
        vec!["1", "2024-01-01T00:00:00", "0.5", "1", "NULL"],
        vec!["2", "2024-01-01T00:00:00", "1.5", "2", "NULL"],
        vec!["3", "2024-01-02T00:00:00", "2.5", "3", "new"],
    ];
    let online =
        "SELECT k, t, amount, n, extra FROM online.default.fg WHERE k IN (1, 2, 3) ORDER BY k";
    for _ in 0..2 {
        let rows = query(&session, "SELECT * FROM fg ORDER BY k").await;
        assert_eq!(cells(&rows).expect("cells"), expected);
        assert_eq!(
            cells(&query(&session, online).await).expect("cells"),
            expected
        );
        session.store().streams().flush(None).await.expect("flush");
    }
    let snapshots = query(&session, "SELECT count(*) FROM \"fg$snapshots\"").await;
    assert_eq!(cells(&snapshots).expect("cells"), vec![vec!["1"]]);
    assert_eq!(every_snapshot_agrees(&session, "default.fg").await, 1);
}

/// ERASE across column changes: a value in a column renamed since, in
/// files of three schemas, leaves every snapshot and the disk; every other
/// row of every snapshot reads as before, a dropped column's values in the
/// older snapshots included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_reaches_every_schema_a_table_had() {
    use crate::lifecycle::{ERASED, assert_no_file_holds};
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql(&format!(
            "CREATE SCHEMA s;
             CREATE FEATURE GROUP s.p (id BIGINT NOT NULL, t TIMESTAMP NOT NULL, email VARCHAR, n INT, old VARCHAR)
                 ENTITY KEY (id) EVENT TIME t;
             INSERT INTO s.p VALUES (1, '2024-01-01', '{ERASED}', 1, 'keep-1'), (2, '2024-01-01', 'b@x', 2, 'keep-2');
             ALTER TABLE s.p ADD COLUMN extra VARCHAR;
             INSERT INTO s.p VALUES (1, '2024-02-01', '{ERASED}', 3, 'keep-3', 'e1'), (3, '2024-02-01', 'c@x', 4, 'keep-4', 'e2');
             ALTER TABLE s.p RENAME COLUMN email TO contact, ALTER COLUMN n TYPE BIGINT, DROP COLUMN old;
             INSERT INTO s.p VALUES (1, '2024-03-01', '{ERASED}', 5, 'e3'), (4, '2024-03-01', 'd@x', 6, 'e4');"
        ))
        .await
        .expect("written across three schemas");
    let ids: Vec<String> = cells(
        &query(
            &session,
            "SELECT snapshot_id FROM s.\"p$snapshots\" ORDER BY sequence_number",
        )
        .await,
    )
    .expect("cells")
    .into_iter()
    .map(|row| row[0].clone())
    .collect();
    assert_eq!(ids.len(), 3);
    let mut before = Vec::new();
    for id in &ids {
        let rows = query(
            &session,
            &format!("SELECT * FROM s.p FOR VERSION AS OF {id}"),
        )
        .await;
        let kept: Vec<Vec<String>> = sorted_rows(&rows)
            .into_iter()
            .filter(|row| !row.iter().any(|cell| cell == ERASED))
            .collect();
        before.push(kept);
    }
    let erased = query(
        &session,
        &format!("ERASE FROM s.p WHERE contact = '{ERASED}'"),
    )
    .await;
    assert_eq!(cells(&erased).expect("cells"), vec![vec!["3"]]);
    for (id, kept) in ids.iter().zip(&before) {
        let rows = query(
            &session,
            &format!("SELECT * FROM s.p FOR VERSION AS OF {id}"),
        )
        .await;
        assert_eq!(&sorted_rows(&rows), kept, "snapshot {id} after the erase");
    }
    // The oldest snapshot still has its dropped column's values.
    assert!(
        before[0]
            .iter()
            .any(|row| row.contains(&"keep-2".to_string()))
    );
    assert_eq!(every_snapshot_agrees(&session, "s.p").await, 3);
    assert_no_file_holds(dir.path(), ERASED);
}

/// A stream whose table another process changed: records of the new shape
/// are taken (the stream sees the change when one does not fit), a
/// producer that leaves out a nullable column sends NULL for it, one that
/// names a column no longer there is told which, and records logged under
/// the old shape commit with the new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_follows_a_change_another_process_made() {
    use std::sync::Arc;

    use arrow::array::{
        Float64Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Schema};
    use pitlake::catalog::TableName;

    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    hold_commits(&session);
    query(
        &session,
        "CREATE FEATURE GROUP fg (k BIGINT NOT NULL, t TIMESTAMP NOT NULL, n INT, score DOUBLE)
             ENTITY KEY (k) EVENT TIME t ONLINE",
    )
    .await;
    let name = TableName::new("default", "fg").expect("name");
    let batch = |columns: Vec<(&str, arrow::array::ArrayRef)>| {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, c)| c).collect(),
        )
        .expect("batch")
    };
    let time = |micros: i64| -> arrow::array::ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(vec![micros]))
    };
    let streams = session.store().streams();
    streams
        .append(
            &name,
            &batch(vec![
                ("k", Arc::new(Int64Array::from(vec![1]))),
                ("t", time(1)),
                ("n", Arc::new(Int32Array::from(vec![7]))),
                ("score", Arc::new(Float64Array::from(vec![0.5]))),
            ]),
        )
        .await
        .expect("old shape, before the change");

    let root = session.warehouse().root().display().to_string();
    run_script("pyiceberg_evolve.py", &[&root, "default.fg"]);

    streams
        .append(
            &name,
            &batch(vec![
                ("k", Arc::new(Int64Array::from(vec![2]))),
                ("t", time(2)),
                ("n", Arc::new(Int64Array::from(vec![5_000_000_000]))),
                ("points", Arc::new(Float64Array::from(vec![1.5]))),
                ("note", Arc::new(StringArray::from(vec!["new"]))),
            ]),
        )
        .await
        .expect("new shape, after the change");
    streams
        .append(
            &name,
            &batch(vec![
                ("k", Arc::new(Int64Array::from(vec![3]))),
                ("t", time(3)),
                ("n", Arc::new(Int64Array::from(vec![3]))),
                ("points", Arc::new(Float64Array::from(vec![2.5]))),
            ]),
        )
        .await
        .expect("a nullable column left out");
    let refused = streams
        .append(
            &name,
            &batch(vec![
                ("k", Arc::new(Int64Array::from(vec![4]))),
                ("t", time(4)),
                ("score", Arc::new(Float64Array::from(vec![3.5]))),
            ]),
        )
        .await
        .expect_err("a column no longer there");
    assert!(
        refused
            .to_string()
            .contains("has column(s) the table does not: score"),
        "{refused}"
    );
    assert_eq!(
        refused.to_string().matches("lacks").count(),
        0,
        "only NOT NULL columns are missed: {refused}"
    );

    let expected = vec![
        vec!["1", "7", "0.5", "NULL"],
        vec!["2", "5000000000", "1.5", "new"],
        vec!["3", "3", "2.5", "NULL"],
    ];
    for _ in 0..2 {
        let rows = query(&session, "SELECT k, n, points, note FROM fg ORDER BY k").await;
        assert_eq!(cells(&rows).expect("cells"), expected);
        let online = query(
            &session,
            "SELECT k, n, points, note FROM online.default.fg WHERE k IN (1, 2, 3) ORDER BY k",
        )
        .await;
        assert_eq!(cells(&online).expect("cells"), expected);
        streams.flush(None).await.expect("flush");
    }
    assert_eq!(every_snapshot_agrees(&session, "default.fg").await, 1);
}

/// A column dropped and added again under its name is another column: a
/// streamed value logged before does not come back in it, committed or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_value_of_a_dropped_column_does_not_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    hold_commits(&session);
    session
        .sql(
            "CREATE FEATURE GROUP g (k BIGINT NOT NULL, t TIMESTAMP NOT NULL, s VARCHAR)
                 ENTITY KEY (k) EVENT TIME t ONLINE;
             INSERT INTO g VALUES (1, '2024-01-01', 'OLDVAL');
             SELECT * FROM online.default.g WHERE k = 1;
             ALTER FEATURE GROUP g DROP COLUMN s, ADD COLUMN s VARCHAR;",
        )
        .await
        .expect("logged, then dropped and added");
    for _ in 0..2 {
        let rows = query(&session, "SELECT k, s FROM g").await;
        assert_eq!(cells(&rows).expect("cells"), vec![vec!["1", "NULL"]]);
        let online = query(&session, "SELECT k, s FROM online.default.g WHERE k = 1").await;
        assert_eq!(cells(&online).expect("cells"), vec![vec!["1", "NULL"]]);
        session.store().streams().flush(None).await.expect("flush");
    }
}

/// Another process drops a column and adds one of the same type: an INSERT
/// into the streamed group here, of as many columns as before, puts its
/// value in the new column (it is not conformed to the stream's old columns
/// and lost at commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_after_another_process_changed_columns_keeps_its_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql(
            "CREATE FEATURE GROUP g (k BIGINT NOT NULL, t TIMESTAMP NOT NULL, s VARCHAR)
                 ENTITY KEY (k) EVENT TIME t ONLINE;
             INSERT INTO g VALUES (1, '2024-01-01', 'one');",
        )
        .await
        .expect("the stream is open");
    let root = session.warehouse().root().display().to_string();
    run_script("pyiceberg_evolve.py", &[&root, "default.g", "replace"]);
    query(
        &session,
        "INSERT INTO g VALUES (2, '2024-01-01', 'NEWVALUE')",
    )
    .await;
    session.store().streams().flush(None).await.expect("flush");
    let rows = query(&session, "SELECT k, s2 FROM g ORDER BY k").await;
    assert_eq!(
        cells(&rows).expect("cells"),
        vec![vec!["1", "NULL"], vec!["2", "NEWVALUE"]]
    );
}
