//! pyiceberg (the real one, from PyPI) and DuckDB (with its iceberg
//! extension, from PyPI) read what pitlake writes, and pitlake reads what
//! pyiceberg writes, through the same SQLite catalog.

use std::fs::File;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pitlake::Session;
use pitlake::output::cells;

use crate::python::run_script;

/// Rows as sorted lists of cell text, so order and physical types don't matter.
pub(crate) fn sorted_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = cells(batches).expect("cells");
    rows.sort();
    rows
}

pub(crate) async fn query(session: &Session, sql: &str) -> Vec<RecordBatch> {
    let mut results = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    results.pop().expect("a result").batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyiceberg_reads_every_snapshot_pitlake_wrote_deletes_included() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("warehouse");
    let session = Session::open(&warehouse).await.expect("open");
    session
        .sql(
            "CREATE SCHEMA airlines;
             CREATE FEATURE GROUP airlines.features (
                 carrier VARCHAR NOT NULL, airport VARCHAR NOT NULL, event_time TIMESTAMP NOT NULL,
                 arr_flights BIGINT, delay_rate DOUBLE, on_time BOOLEAN, day DATE
             ) ENTITY KEY (carrier, airport) EVENT TIME event_time;
             INSERT INTO airlines.features VALUES
                 ('AA', 'JFK', '2024-01-01 00:00:00', 1200, 0.21, true, '2024-01-01'),
                 ('DL', 'ATL', '2024-01-01 06:30:00', NULL, 0.12, false, NULL);
             INSERT INTO airlines.features VALUES ('AA', 'JFK', '2024-02-01', 1300, NULL, NULL, '2024-02-01');
             INSERT INTO airlines.features SELECT carrier, 'LAX', event_time, arr_flights * 2, delay_rate, on_time, day FROM airlines.features;
             DELETE FROM airlines.features WHERE carrier = 'DL' AND airport = 'ATL';
             DELETE FROM airlines.features WHERE airport = 'LAX' AND arr_flights > 2500;
             CREATE VIEW airlines.busy AS SELECT * FROM airlines.features WHERE arr_flights > 1000;",
        )
        .await
        .expect("pitlake writes");

    let out = tempfile::tempdir().expect("tempdir");
    let root = session.warehouse().root().display().to_string();
    let printed = run_script(
        "pyiceberg_read.py",
        &[
            &root,
            "airlines.features",
            &out.path().display().to_string(),
        ],
    );
    // A view's catalog row is not a table to pyiceberg.
    let (tables, printed) = printed.split_once('\n').expect("the table list");
    assert_eq!(tables, "tables: ['features']");
    let ids: Vec<i64> = printed
        .lines()
        .map(|l| l.trim().parse().expect("snapshot id"))
        .collect();
    assert_eq!(
        ids.len(),
        5,
        "pyiceberg sees the five snapshots (three appends, two deletes): {printed}"
    );

    for id in ids {
        let ours = query(
            &session,
            &format!("SELECT * FROM airlines.features FOR VERSION AS OF {id}"),
        )
        .await;
        let ours = sorted_rows(&ours);
        assert!(!ours.is_empty());
        for (engine, name) in [
            ("pyiceberg", format!("{id}.parquet")),
            ("DuckDB", format!("{id}.duckdb.parquet")),
        ] {
            let file = File::open(out.path().join(name)).expect("a scan");
            let theirs: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .build()
                .expect("reader")
                .collect::<Result<_, _>>()
                .expect("batches");
            assert_eq!(
                sorted_rows(&theirs),
                ours,
                "snapshot {id}: {engine} and pitlake disagree"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitlake_reads_tables_and_schema_changes_pyiceberg_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("warehouse");
    // Opened before pyiceberg creates the table: the table list must be live.
    let session = Session::open(&warehouse).await.expect("open");
    let root = session.warehouse().root().display().to_string();
    let printed = run_script("pyiceberg_write.py", &[&root]);
    let ids: Vec<i64> = printed
        .lines()
        .map(|l| l.trim().parse().expect("snapshot id"))
        .collect();
    assert_eq!(ids.len(), 3, "{printed}");

    let tables = query(
        &session,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'py'",
    )
    .await;
    assert_eq!(sorted_rows(&tables), vec![vec!["events".to_string()]]);

    let current = query(&session, "SELECT * FROM py.events ORDER BY id").await;
    assert_eq!(
        cells(&current).expect("cells"),
        vec![
            vec!["1", "a", "2024-01-01T00:00:00", "NULL"],
            vec!["2", "b", "2024-01-02T00:00:00", "NULL"],
            vec!["3", "NULL", "2024-01-03T00:00:00", "NULL"],
            vec!["4", "d", "2024-01-04T00:00:00", "0.5"],
        ]
    );

    // The first snapshot is read with its own schema: no `score` column yet.
    let first = query(
        &session,
        &format!("SELECT * FROM py.events FOR VERSION AS OF {}", ids[0]),
    )
    .await;
    assert_eq!(first[0].schema().fields().len(), 3);
    assert_eq!(sorted_rows(&first).len(), 2);

    // And pitlake can append to it: pyiceberg wrote it, pitlake commits the next snapshot.
    let written = query(
        &session,
        "INSERT INTO py.events VALUES (5, 'e', '2024-01-05', 1.5)",
    )
    .await;
    assert_eq!(cells(&written).expect("cells"), vec![vec!["1"]]);
    let snapshots = query(&session, "SELECT count(*) FROM py.\"events$snapshots\"").await;
    assert_eq!(cells(&snapshots).expect("cells"), vec![vec!["4"]]);
}

/// A table pyiceberg partitioned: pitlake reads it, and refuses to write
/// to it or compact it, naming why, instead of panicking; nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_table_is_read_and_its_writes_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    let root = session.warehouse().root().display().to_string();
    run_script("pyiceberg_partitioned.py", &[&root]);
    let rows = query(&session, "SELECT count(*) FROM py.part").await;
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["4"]]);
    for sql in [
        "INSERT INTO py.part VALUES (3, 'z')",
        "CALL system.rewrite_data_files(table => 'py.part', min_input_files => 1)",
    ] {
        let err = session.sql(sql).await.expect_err(sql).to_string();
        assert!(err.contains("partitioned table"), "{sql}: {err}");
    }
    let rows = query(&session, "SELECT count(*) FROM py.\"part$snapshots\"").await;
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["2"]]);
}
