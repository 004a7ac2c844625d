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
