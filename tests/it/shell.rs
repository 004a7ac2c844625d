//! `pitlake sql` as a person and a script use it: a mistyped warehouse,
//! piped input, the interactive shell in a terminal.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn pitlake_sql(warehouse: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pitlake"))
        .arg("sql")
        .arg("--warehouse")
        .arg(warehouse)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pitlake sql");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("pitlake sql runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_mistyped_warehouse_is_an_error_not_a_new_warehouse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = dir.path().join("warehuose");
    let out = pitlake_sql(&typo, &["-c", "SELECT 1"], None);
    assert!(!out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no warehouse at") && stderr.contains("warehuose"),
        "{stderr}"
    );
    assert!(!typo.exists(), "a query created the folder");
    // A temporary table lives in memory: no reason to make a warehouse.
    let out = pitlake_sql(
        &typo,
        &["-c", "CREATE TEMPORARY TABLE t AS SELECT 1 AS x"],
        None,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("no warehouse at"), "{out:?}");
    assert!(!typo.exists(), "a temporary table created the warehouse");

    // A statement that creates something may create the warehouse, and says so.
    let out = pitlake_sql(&typo, &["-c", "CREATE SCHEMA s"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("created a new warehouse"));
    let out = pitlake_sql(&typo, &["-c", "SELECT 1"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(!text(&out.stderr).contains("created"), "{out:?}");
}

#[test]
fn piped_input_runs_as_a_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let out = pitlake_sql(
        &warehouse,
        &[],
        Some(
            "CREATE TABLE t1 AS SELECT 1 AS x;\nSELECT x + 41 AS answer FROM t1;\nSELECT nope;\nSELECT 99;",
        ),
    );
    assert!(!out.status.success(), "an error must fail the run: {out:?}");
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains("pitlake "),
        "banner in piped output: {stdout}"
    );
    assert!(stdout.contains("42"), "{stdout}");
    assert!(!stdout.contains("99"), "ran past the error: {stdout}");
    assert!(text(&out.stderr).contains("nope"), "{out:?}");

    let out = pitlake_sql(&warehouse, &["--format", "csv"], Some("SELECT x FROM t1;"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "x\n1\n");
}

#[test]
fn the_shell_prints_every_statement_and_survives_ctrl_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/shell_pty.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_pitlake"))
        .arg(&warehouse)
        .env("HOME", dir.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let history = std::fs::read_to_string(dir.path().join(".pitlake_history"))
        .expect("the shell kept its history");
    assert!(history.contains("max(x) + 35"), "{history}");
}

/// The Arrow IPC streams of `bytes`, one after another, as (column names,
/// rows as text) each.
fn arrow_streams(bytes: &[u8]) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    use arrow::util::display::ArrayFormatter;
    let mut cursor = std::io::Cursor::new(bytes);
    let mut streams = Vec::new();
    while (cursor.position() as usize) < bytes.len() {
        let reader =
            arrow::ipc::reader::StreamReader::try_new(&mut cursor, None).expect("a stream");
        let names = reader
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.expect("a batch");
            let options = Default::default();
            let cells: Vec<ArrayFormatter> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
                .collect();
            for row in 0..batch.num_rows() {
                rows.push(cells.iter().map(|c| c.value(row).to_string()).collect());
            }
        }
        streams.push((names, rows));
    }
    streams
}

#[test]
fn arrow_format_writes_a_stream_per_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let script = "CREATE TABLE t (id BIGINT, name VARCHAR); \
                  INSERT INTO t SELECT value, 'n' || value FROM range(20000); \
                  SELECT count(*) AS n, max(name) AS top FROM t; \
                  SELECT id, name FROM t WHERE id < 3 ORDER BY id; \
                  SELECT id FROM t WHERE id < 0; \
                  SELECT id FROM t ORDER BY id";
    let out = pitlake_sql(&warehouse, &["--format", "arrow", "-c", script], None);
    assert!(out.status.success(), "{out:?}");
    let streams = arrow_streams(&out.stdout);
    // The DDL and the INSERT wrote nothing that would break the streams;
    // an INSERT's count is a result with a column, so it has its stream.
    let names: Vec<&Vec<String>> = streams.iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 5, "{streams:?}");
    assert_eq!(
        streams[1].1,
        vec![vec!["20000".to_string(), "n9999".into()]]
    );
    assert_eq!(
        streams[2].1,
        vec![
            vec!["0".to_string(), "n0".into()],
            vec!["1".into(), "n1".into()],
            vec!["2".into(), "n2".into()],
        ]
    );
    // No rows is still a stream: the schema and the end mark.
    assert_eq!(streams[3], (vec!["id".to_string()], vec![]));
    // Many batches, written as they come.
    let ids: Vec<String> = streams[4].1.iter().map(|row| row[0].clone()).collect();
    let expected: Vec<String> = (0..20000).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);

    // A query failing before its first batch writes nothing; the results
    // before it are whole.
    let failing = |bad_id: u32| {
        format!(
            "SET datafusion.execution.batch_size = 1000; SELECT 1 AS one; \
             SELECT CAST(CASE WHEN id = {bad_id} THEN 'x' ELSE '1' END AS INT) FROM t"
        )
    };
    let out = pitlake_sql(&warehouse, &["--format", "arrow", "-c", &failing(0)], None);
    assert!(!out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("Cannot cast"), "{out:?}");
    assert_eq!(arrow_streams(&out.stdout).len(), 1);
    // One failing after it ends its stream unfinished, so that a reader
    // fails rather than take the rows before the error for the result.
    let out = pitlake_sql(
        &warehouse,
        &["--format", "arrow", "-c", &failing(19999)],
        None,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("Cannot cast"), "{out:?}");
    let mut cursor = std::io::Cursor::new(&out.stdout[..]);
    let whole = arrow::ipc::reader::StreamReader::try_new(&mut cursor, None).expect("stream 1");
    assert_eq!(
        whole.map(|b| b.expect("a batch").num_rows()).sum::<usize>(),
        1
    );
    let partial = arrow::ipc::reader::StreamReader::try_new(&mut cursor, None).expect("stream 2");
    let read: Result<Vec<_>, _> = partial.collect();
    assert!(read.is_err(), "a partial result read as whole: {read:?}");

    // A few rows viewing into large string buffers carry their own bytes
    // only.
    let out = pitlake_sql(
        &warehouse,
        &[
            "--format",
            "arrow",
            "-c",
            "CREATE TABLE longs AS SELECT repeat(CAST(value AS VARCHAR), 200) AS s FROM range(5000); \
             SELECT arrow_cast(s, 'Utf8View') AS v FROM longs LIMIT 1",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let streams = arrow_streams(&out.stdout);
    assert_eq!(streams.last().expect("the view").1.len(), 1);
    assert!(out.stdout.len() < 16 * 1024, "{} bytes", out.stdout.len());
}
