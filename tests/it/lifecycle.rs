//! The data lifecycle under concurrency: commits of every kind from several
//! writers at once lose nothing.

use std::process::Command;

use pitlake::Session;

use crate::one_cell;
use crate::python::run_script;

fn pitlake_sql_script(
    warehouse: &std::path::Path,
    script: &std::path::Path,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_pitlake"))
        .arg("sql")
        .arg("--warehouse")
        .arg(warehouse)
        .arg("-f")
        .arg(script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pitlake sql")
}

/// A `pitlake sql` process inserting, this process deleting and pyiceberg
/// appending, all into one table at once: every insert and append is there
/// afterwards, exactly the deleted rows are gone, and no statement failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_inserts_and_pyiceberg_appends_at_once_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let session = Session::open(&warehouse).await.expect("open");
    session
        .sql("CREATE TABLE t (writer INT, i INT)")
        .await
        .expect("create");
    // Writer 0's rows, to be deleted one by one.
    let values: Vec<String> = (0..20).map(|i| format!("(0, {i})")).collect();
    session
        .sql(&format!("INSERT INTO t VALUES {}", values.join(", ")))
        .await
        .expect("first rows");

    const INSERTS: usize = 30;
    const APPENDS: usize = 30;
    let script = dir.path().join("inserts.sql");
    let inserts: String = (0..INSERTS)
        .map(|i| format!("INSERT INTO t VALUES (1, {i});\n"))
        .collect();
    std::fs::write(&script, inserts).expect("script");
    let root = warehouse
        .canonicalize()
        .expect("root")
        .display()
        .to_string();
    let go = dir.path().join("go");
    let go_arg = go.display().to_string();
    let appender = std::thread::spawn(move || {
        run_script(
            "pyiceberg_append_loop.py",
            &[&root, "default.t", &APPENDS.to_string(), &go_arg],
        )
    });
    // All three start together, once pyiceberg has loaded.
    let ready = dir.path().join("go.ready");
    for _ in 0..6000 {
        if ready.exists() || appender.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let inserter = pitlake_sql_script(&warehouse, &script);
    std::fs::write(&go, "").expect("go");
    for i in (0..20).step_by(2) {
        let removed = one_cell(
            &session,
            &format!("DELETE FROM t WHERE writer = 0 AND i = {i}"),
        )
        .await;
        assert_eq!(removed, "1", "the delete of row {i}");
    }
    // Then inserts of its own while pyiceberg is still appending (a few,
    // paced: a writer that commits without pause starves pyiceberg, which
    // takes no lock and must win a swap against it).
    let mut own = 0;
    while own < 30 && (!appender.is_finished() || own == 0) {
        session
            .sql(&format!("INSERT INTO t VALUES (3, {own})"))
            .await
            .expect("insert while pyiceberg appends");
        own += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = inserter.wait_with_output().expect("inserter");
    assert!(
        out.status.success(),
        "an INSERT failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = appender.join().expect("appender");
    let appended: usize = printed
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("rows appended");
    assert_eq!(appended, APPENDS);

    let per_writer = |writer: i32| {
        let session = &session;
        async move {
            one_cell(
                session,
                &format!(
                    "SELECT count(DISTINCT i) || '/' || count(*) FROM t WHERE writer = {writer}"
                ),
            )
            .await
        }
    };
    assert_eq!(
        per_writer(0).await,
        "10/10",
        "exactly the odd rows are left"
    );
    assert_eq!(per_writer(1).await, format!("{INSERTS}/{INSERTS}"));
    assert_eq!(per_writer(2).await, format!("{APPENDS}/{APPENDS}"));
    assert_eq!(per_writer(3).await, format!("{own}/{own}"));
    assert_eq!(
        one_cell(
            &session,
            "SELECT count(*) FROM t WHERE writer = 0 AND i % 2 = 0"
        )
        .await,
        "0"
    );
}

/// The value erased: distinctive, so a byte search finds any copy.
pub(crate) const ERASED: &str = "erase-me-7f3a@example.com";

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// The string values of every Parquet file under `dir` that equal `value`.
fn parquet_holding(dir: &std::path::Path, value: &str) -> Vec<std::path::PathBuf> {
    use arrow::array::{Array, StringArray};
    let mut holding = Vec::new();
    for path in files_under(dir) {
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).expect("parquet file");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            for column in batch.columns() {
                let cast = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8);
                let Ok(strings) = cast else { continue };
                let strings = strings
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("utf8");
                if (0..strings.len()).any(|i| strings.is_valid(i) && strings.value(i) == value) {
                    holding.push(path.clone());
                }
            }
        }
    }
    holding
}

/// No Parquet file under `root`, decoded, and no byte of any file there
/// holds `value`.
pub(crate) fn assert_no_file_holds(root: &std::path::Path, value: &str) {
    assert_eq!(
        parquet_holding(root, value),
        Vec::<std::path::PathBuf>::new()
    );
    for path in files_under(root) {
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
            "{} holds the erased value",
            path.display()
        );
    }
}

/// ERASE takes a person's rows out of every snapshot: pitlake's time travel
/// and pyiceberg's scan of every snapshot agree and lack them, every other
/// row of every snapshot (and a pinned ASOF training set) is as before, the
/// snapshot ids are kept, and no file under the warehouse holds the value:
/// no Parquet file decoded, and no byte of any file (metadata, manifests,
/// the stream log, the catalog and audit databases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_takes_rows_out_of_every_snapshot_and_off_the_disk() {
    use crate::interop::{query, sorted_rows};
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let session = Session::open(&warehouse).await.expect("open");
    let row = |email: &str, day: u32, score: f64| {
        format!("('{email}', TIMESTAMP '2024-01-{day:02} 00:00:00', {score:.1})")
    };
    session
        .sql("CREATE FEATURE GROUP people (email VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, score DOUBLE) ENTITY KEY (email) EVENT TIME ts ONLINE")
        .await
        .expect("create");
    // Five snapshots; the erased person is in three of them (one streamed
    // through the log), once alone in a file.
    let commits = [
        vec![row(ERASED, 1, 1.0), row("ann@example.com", 1, 2.0)],
        vec![row("bob@example.com", 2, 3.0)],
        vec![row(ERASED, 3, 4.0)],
        vec![
            row("ann@example.com", 4, 5.0),
            row("cid@example.com", 4, 6.0),
        ],
    ];
    for values in &commits {
        session
            .sql(&format!(
                "INSERT INTO people SELECT * FROM (VALUES {}) AS v(e, t, s)",
                values.join(", ")
            ))
            .await
            .expect("insert");
    }
    // Streamed (online group, VALUES): through the write-ahead log.
    session
        .sql(&format!(
            "INSERT INTO people VALUES {}, {}",
            row(ERASED, 5, 7.0),
            row("dan@example.com", 5, 8.0)
        ))
        .await
        .expect("streamed insert");
    session
        .sql("DELETE FROM people WHERE email = 'cid@example.com'")
        .await
        .expect("delete");

    let training = |id: i64| {
        format!(
            "SELECT l.email, l.at, f.score FROM (VALUES ('ann@example.com', TIMESTAMP '2024-01-09'), ('{ERASED}', TIMESTAMP '2024-01-09'), ('bob@example.com', TIMESTAMP '2024-01-09')) AS l(email, at) \
             ASOF JOIN people FOR VERSION AS OF {id} f MATCH_CONDITION (l.at >= f.ts) ON l.email = f.email ORDER BY l.email"
        )
    };
    let snapshots_sql =
        "SELECT snapshot_id, committed_at FROM \"people$snapshots\" ORDER BY sequence_number";
    // The stream commits at the DELETE; read what every snapshot holds.
    let before_ids = sorted_rows(&query(&session, snapshots_sql).await);
    assert!(before_ids.len() >= 5, "{before_ids:?}");
    let mut before = Vec::new();
    for id in &before_ids {
        let id: i64 = id[0].parse().expect("id");
        let rows = sorted_rows(
            &query(
                &session,
                &format!("SELECT * FROM people FOR VERSION AS OF {id}"),
            )
            .await,
        );
        let trained = sorted_rows(&query(&session, &training(id)).await);
        before.push((id, rows, trained));
    }
    assert!(
        before
            .iter()
            .any(|(_, rows, _)| rows.iter().any(|r| r[0] == ERASED))
    );

    let erased = one_cell(
        &session,
        &format!("ERASE FROM people WHERE email = '{ERASED}'"),
    )
    .await;
    assert_eq!(erased, "3");

    // Same snapshots, same timestamps; each as before less the erased rows.
    assert_eq!(
        sorted_rows(&query(&session, snapshots_sql).await),
        before_ids
    );
    for (id, rows, trained) in &before {
        let now = sorted_rows(
            &query(
                &session,
                &format!("SELECT * FROM people FOR VERSION AS OF {id}"),
            )
            .await,
        );
        let expected: Vec<Vec<String>> = rows.iter().filter(|r| r[0] != ERASED).cloned().collect();
        assert_eq!(now, expected, "snapshot {id}");
        let trained_now = sorted_rows(&query(&session, &training(*id)).await);
        let expected: Vec<Vec<String>> = trained
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if r[0] == ERASED {
                    r[2] = "NULL".into();
                }
                r
            })
            .collect();
        assert_eq!(trained_now, expected, "the training set pinned at {id}");
    }
    assert_eq!(
        one_cell(
            &session,
            &format!("SELECT count(ts) FROM online.default.people WHERE email = '{ERASED}'")
        )
        .await,
        "0"
    );

    // pyiceberg reads every snapshot the same.
    let out = tempfile::tempdir().expect("tempdir");
    let root = session.warehouse().root().display().to_string();
    let printed = run_script(
        "pyiceberg_read.py",
        &[&root, "default.people", &out.path().display().to_string()],
    );
    let theirs_ids: Vec<&str> = printed.lines().skip(1).map(str::trim).collect();
    assert_eq!(theirs_ids.len(), before.len());
    for (id, rows, _) in &before {
        let expected: Vec<Vec<String>> = rows.iter().filter(|r| r[0] != ERASED).cloned().collect();
        for (engine, name) in [
            ("pyiceberg", format!("{id}.parquet")),
            ("DuckDB", format!("{id}.duckdb.parquet")),
        ] {
            let file = std::fs::File::open(out.path().join(name)).expect("a scan");
            let theirs: Vec<arrow::array::RecordBatch> =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .expect("parquet")
                    .build()
                    .expect("reader")
                    .collect::<Result<_, _>>()
                    .expect("batches");
            assert_eq!(sorted_rows(&theirs), expected, "{engine} at snapshot {id}");
        }
    }

    // No file holds the value.
    let root = session.warehouse().root().to_path_buf();
    assert_no_file_holds(&root, ERASED);
    // Before the erase, that search finds it (the test can fail).
    assert!(!parquet_holding(out.path(), "ann@example.com").is_empty());
}

/// A process killed after its ERASE committed, before it deleted the old
/// history's files (here: the library's erase, never finished), leaves a
/// journal; VACUUM finishes the deletions, so no file holds the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_finishes_an_erase_a_killed_process_committed() {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{binary, col, lit};
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let session = Session::open(&warehouse).await.expect("open");
    session
        .sql(&format!(
            "CREATE TABLE t (email VARCHAR, n INT);
             INSERT INTO t VALUES ('{ERASED}', 1), ('keep@example.com', 2);
             INSERT INTO t VALUES ('{ERASED}', 3)"
        ))
        .await
        .expect("setup");
    let name =
        pitlake::catalog::TableName::new("default".to_string(), "t".to_string()).expect("name");
    let table = session
        .warehouse()
        .load_table("default", "t")
        .await
        .expect("load");
    let schema =
        iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema()).expect("schema");
    let predicate = binary(
        col("email", &schema).expect("column"),
        Operator::Eq,
        lit(ERASED),
        &schema,
    )
    .expect("predicate");
    let erasure = pitlake::lifecycle::erase_rows(session.warehouse(), &name, &predicate, &schema)
        .await
        .expect("erase");
    assert_eq!(erasure.erased.rows, 2);
    // Killed here: committed, old files still there.
    drop(erasure);
    let root = session.warehouse().root().to_path_buf();
    assert!(
        !parquet_holding(&root, ERASED).is_empty(),
        "the old files are still there"
    );
    assert_eq!(one_cell(&session, "SELECT count(*) FROM t").await, "1");

    session.sql("VACUUM t").await.expect("vacuum");
    assert_no_file_holds(&root, ERASED);
    assert_eq!(one_cell(&session, "SELECT count(*) FROM t").await, "1");
}

/// remove_orphan_files deletes the old files no metadata names (a killed
/// write's data file, a failed commit's manifest and metadata file) and
/// nothing else: young orphans stay by default, `dry_run` deletes nothing,
/// and every snapshot still reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_orphan_files_deletes_only_old_unreferenced_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let session = Session::open(&warehouse).await.expect("open");
    session
        .sql("CREATE TABLE t (a INT); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)")
        .await
        .expect("setup");
    let table_dir = session.warehouse().root().join("default").join("t");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86_400);
    let orphan = |path: std::path::PathBuf, age: Option<std::time::SystemTime>| {
        std::fs::write(&path, b"junk").expect("orphan");
        if let Some(at) = age {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open")
                .set_modified(at)
                .expect("mtime");
        }
        path
    };
    let old_data = orphan(table_dir.join("data/killed-0-00000.parquet"), Some(old));
    let old_manifest = orphan(table_dir.join("metadata/failed-m0.avro"), Some(old));
    let old_metadata = orphan(
        table_dir.join("metadata/00099-lost.metadata.json"),
        Some(old),
    );
    let young = orphan(table_dir.join("data/running-0-00000.parquet"), None);
    // Every referenced file made old too: age alone must not make an orphan.
    for path in files_under(&table_dir) {
        if ![&old_data, &old_manifest, &old_metadata, &young].contains(&&path)
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open")
                .set_modified(old)
                .expect("mtime");
        }
    }
    let before = files_under(&table_dir).len();
    let listed = session
        .sql("CALL system.remove_orphan_files(table => 'default.t', dry_run => true)")
        .await
        .expect("dry run");
    let rows = crate::interop::sorted_rows(&listed[0].batches);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        files_under(&table_dir).len(),
        before,
        "a dry run deletes nothing"
    );

    session
        .sql("CALL system.remove_orphan_files('default.t')")
        .await
        .expect("remove");
    for gone in [&old_data, &old_manifest, &old_metadata] {
        assert!(!gone.exists(), "{} stays", gone.display());
    }
    assert!(young.exists(), "a young orphan may be a commit under way");
    assert_eq!(files_under(&table_dir).len(), before - 3);
    assert_eq!(one_cell(&session, "SELECT count(*) FROM t").await, "2");
    assert_eq!(
        one_cell(
            &session,
            "SELECT count(*) FROM t FOR VERSION AS OF (SELECT snapshot_id FROM \"t$snapshots\" ORDER BY sequence_number LIMIT 1)"
        )
        .await,
        "1"
    );
}

/// An ERASE that cannot reach a stream log's acknowledged records (another
/// process, here another store, owns the log) refuses, naming it, instead
/// of erasing around them; DELETE too. Nothing is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_refuses_when_another_process_owns_the_stream_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let owner = Session::open(&warehouse).await.expect("open");
    owner
        .sql(&format!(
            "CREATE FEATURE GROUP g (email VARCHAR NOT NULL, ts TIMESTAMP NOT NULL) ENTITY KEY (email) EVENT TIME ts ONLINE;
             INSERT INTO g VALUES ('{ERASED}', TIMESTAMP '2024-01-01 00:00:00')"
        ))
        .await
        .expect("streamed insert");
    let other = Session::open(&warehouse).await.expect("second store");
    for statement in ["ERASE", "DELETE"] {
        let refused = other
            .sql(&format!("{statement} FROM g WHERE email = '{ERASED}'"))
            .await
            .expect_err("the log is another's");
        let message = refused.to_string();
        assert!(
            message.contains("the stream log of default.g")
                && message.contains("another pitlake process"),
            "{message}"
        );
    }
    assert_eq!(
        one_cell(
            &owner,
            &format!("SELECT count(*) FROM g WHERE email = '{ERASED}'")
        )
        .await,
        "1"
    );
}
