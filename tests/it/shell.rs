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
