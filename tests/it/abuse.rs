//! A hostile or careless client against the real `pitlake serve` and
//! `pitlake sql` binaries: crafted names, deep expressions, host paths in
//! COPY, two processes writing one table, a full disk. Each case asserts a
//! clear error, nothing acknowledged lost, nothing touched outside the
//! warehouse, and the server still answering.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_flight::sql::client::FlightSqlServiceClient;
use pitlake::Session;
use pitlake::output::cells;
use tonic::transport::Channel;

use crate::flight::{query, update};
use crate::stream_kill::ServeProcess;

/// How arrow-flight's client spells the gRPC codes in its errors.
const INVALID_ARGUMENT: &str = "code: 'Client specified an invalid argument'";
const PERMISSION_DENIED: &str = "code: 'The caller does not have permission";

/// A statement's error over Flight SQL (executed as an update, so every
/// kind of statement runs); panics if it succeeds.
async fn refused(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> String {
    match client.execute_update(sql.to_string(), None).await {
        Ok(n) => panic!("{sql}: accepted ({n})"),
        Err(e) => e.to_string(),
    }
}

async fn count(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> String {
    cells(&query(client, sql).await).expect("cells")[0][0].clone()
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(dir).expect("under dir").to_path_buf());
        }
    }
    out.sort();
    out
}

fn pitlake_sql(warehouse: &Path, sql: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pitlake"))
        .arg("sql")
        .arg("--warehouse")
        .arg(warehouse)
        .args(["--format", "csv", "-c", sql])
        .output()
        .expect("run pitlake sql")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_names_never_reach_outside_the_warehouse() {
    let root = tempfile::tempdir().expect("tempdir");
    let warehouse = root.path().join("a/b/wh");
    let victim = root.path().join("victimdir");
    std::fs::create_dir_all(&victim).expect("victim");
    std::fs::write(victim.join("precious.txt"), "keep me").expect("victim file");
    std::fs::create_dir_all(&warehouse).expect("warehouse");
    let server = ServeProcess::start(&warehouse, &[]);
    let mut client = server.client().await;
    update(
        &mut client,
        "CREATE FEATURE GROUP g (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t ONLINE",
    )
    .await;
    // A streamed write creates _streams/default, the folder the old drop
    // of a crafted name resolved `..` from.
    update(
        &mut client,
        "INSERT INTO g VALUES (1, TIMESTAMP '2024-01-01 00:00:00', 0.5)",
    )
    .await;
    let outside = || {
        tree(root.path())
            .into_iter()
            .filter(|p| !p.starts_with("a/b/wh"))
            .collect::<Vec<_>>()
    };
    let before_outside = outside();

    let long = "x".repeat(300);
    let crafted = [
        "..",
        "../..",
        "../../../victimdir",
        "/tmp/pitlake-abuse",
        ".",
        "",
        "a/b",
        "t$files",
        "x.y",
        "new\nline",
        long.as_str(),
    ];
    for name in crafted {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        for sql in [
            format!("CREATE TABLE {quoted} (a INT)"),
            format!("CREATE SCHEMA {quoted}"),
            format!("DROP TABLE {quoted}"),
            format!("DROP TABLE IF EXISTS {quoted}"),
            format!("DROP FEATURE GROUP {quoted}"),
            format!(
                "CREATE FEATURE GROUP {quoted} (k INT, t TIMESTAMP) ENTITY KEY (k) EVENT TIME t"
            ),
            format!("CREATE TABLE {quoted} AS SELECT 1 AS a"),
            format!("INSERT INTO {quoted} VALUES (1)"),
            format!("CREATE TABLE {quoted}.t (a INT)"),
            format!("DROP TABLE {quoted}.t"),
        ] {
            let err = refused(&mut client, &sql).await;
            // `""` is not even an identifier to the parser.
            let named = err.contains("invalid") || (name.is_empty() && err.contains("syntax"));
            assert!(err.contains(INVALID_ARGUMENT) && named, "{sql}: {err}");
        }
    }
    assert_eq!(
        outside(),
        before_outside,
        "files changed outside the warehouse"
    );
    assert!(!Path::new("/tmp/pitlake-abuse").exists());
    assert_eq!(
        std::fs::read_to_string(victim.join("precious.txt")).expect("victim intact"),
        "keep me"
    );
    // The warehouse and the server are as they were.
    assert_eq!(count(&mut client, "SELECT count(*) FROM g").await, "1");
    let groups = query(&mut client, "SHOW FEATURE GROUPS").await;
    assert_eq!(groups.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// `id = 0 OR id = 1 OR …` with `terms` terms.
fn or_chain(terms: usize) -> String {
    let terms: Vec<String> = (0..terms).map(|i| format!("id = {i}")).collect();
    format!("SELECT count(*) FROM t WHERE {}", terms.join(" OR "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_are_refused_and_the_server_lives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[]);
    let mut client = server.client().await;
    update(&mut client, "CREATE TABLE t (id BIGINT)").await;
    update(
        &mut client,
        "INSERT INTO t SELECT value FROM generate_series(0, 999)",
    )
    .await;
    let deep = [
        or_chain(2000),
        or_chain(2000).replace(" OR ", " AND "),
        format!("SELECT {}", vec!["1"; 5000].join(" + ")),
        format!("SELECT {}", vec!["1"; 1_000_000].join(" + ")),
        // A chain that ends in a syntax error (the parser drops what it built).
        format!("SELECT {} +", vec!["1"; 1_000_000].join(" + ")),
        vec!["SELECT 1"; 3000].join(" UNION ALL "),
        format!("SELECT {}", vec!["(1 + 1)"; 3000].join(" * ")),
        // Nested CASTs: the parser retried every alternative once it hit
        // its recursion limit, and held a server thread for good.
        format!("SELECT {}1{}", "CAST(".repeat(48), " AS INT)".repeat(48)),
        format!(
            "SELECT {}{}true{}",
            "NOT ".repeat(18),
            "CAST(".repeat(32),
            " AS BOOLEAN)".repeat(32)
        ),
    ];
    for sql in &deep {
        let err = match client.execute(sql.clone(), None).await {
            Ok(_) => panic!("{}…: accepted", &sql[..60]),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(INVALID_ARGUMENT) && err.contains("statement too complex"),
            "{}…: {err}",
            &sql[..60]
        );
    }
    // Just within the limit, the chain plans and runs on the server's stacks.
    assert_eq!(count(&mut client, &or_chain(500)).await, "500");
    let sum = format!("SELECT {}", vec!["1"; 1000].join(" + "));
    assert_eq!(count(&mut client, &sum).await, "1000");
    assert_eq!(count(&mut client, "SELECT count(*) FROM t").await, "1000");
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");

    // The CLI: an error and exit code 1, not a crash.
    let out = pitlake_sql(dir.path(), &or_chain(3000));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("statement too complex"), "{stderr}");
    let out = pitlake_sql(dir.path(), &or_chain(500));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "count(*)\n500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_reaches_only_the_configured_folders() {
    let root = tempfile::tempdir().expect("tempdir");
    let warehouse = root.path().join("wh");
    let import = root.path().join("import");
    let export = root.path().join("export");
    for dir in [&warehouse, &import, &export] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let secret = root.path().join("secret.csv");
    std::fs::write(&secret, "id\n42\n").expect("secret");
    std::fs::write(import.join("ok.csv"), "id\n1\n2\n").expect("import file");

    // By default a client reads and writes no file of the host.
    let server = ServeProcess::start(&warehouse, &[]);
    let mut client = server.client().await;
    update(&mut client, "CREATE TABLE t (id BIGINT)").await;
    update(&mut client, "INSERT INTO t VALUES (7)").await;
    let data_file = tree(&warehouse.join("default/t/data"))
        .into_iter()
        .next()
        .expect("a data file");
    let data_file = warehouse.join("default/t/data").join(data_file);
    for sql in [
        format!("COPY t FROM '{}'", secret.display()),
        format!("COPY t FROM '{}'", import.join("ok.csv").display()),
        format!("COPY t FROM '{}'", data_file.display()),
        format!(
            "COPY (SELECT 1 AS id) TO '{}'",
            export.join("x.parquet").display()
        ),
        format!(
            "COPY (SELECT 1 AS id) TO '{}'",
            warehouse.join("catalog.db").display()
        ),
    ] {
        let err = refused(&mut client, &sql).await;
        assert!(
            err.contains(PERMISSION_DENIED) && err.contains("no files for its clients"),
            "{sql}: {err}"
        );
    }
    // Nor does SET reach the host: the runtime's temporary folder is the
    // operator's, and sizes of work are bounded.
    let spill = root.path().join("evil-spill");
    for (sql, expected) in [
        (
            format!(
                "SET datafusion.runtime.temp_directory = '{}'",
                spill.display()
            ),
            "server's operator",
        ),
        (
            "SET datafusion.execution.target_partitions = 1000000".to_string(),
            "whole number from 1 to 1024",
        ),
    ] {
        let err = refused(&mut client, &sql).await;
        assert!(
            err.contains(INVALID_ARGUMENT) && err.contains(expected),
            "{sql}: {err}"
        );
    }
    assert!(!spill.exists());
    server.stop();

    // With folders: inside them only, never the warehouse, `..` and links
    // followed before judging.
    let sneaky = root.path().join("export/link");
    std::os::unix::fs::symlink(&warehouse, &sneaky).expect("symlink");
    let server = ServeProcess::start(
        &warehouse,
        &[
            "--import-dir",
            import.to_str().expect("utf-8"),
            "--export-dir",
            export.to_str().expect("utf-8"),
        ],
    );
    let mut client = server.client().await;
    let rows = update(
        &mut client,
        &format!("COPY t FROM '{}'", import.join("ok.csv").display()),
    )
    .await;
    assert_eq!(rows, 2);
    update(
        &mut client,
        &format!(
            "COPY (SELECT * FROM t) TO '{}'",
            export.join("out.parquet").display()
        ),
    )
    .await;
    assert!(export.join("out.parquet").exists());
    for (sql, expected) in [
        (format!("COPY t FROM '{}'", secret.display()), "only under"),
        (
            format!("COPY t FROM '{}/../secret.csv'", import.display()),
            "only under",
        ),
        (
            format!(
                "COPY (SELECT 1 AS id) TO '{}/../escaped.parquet'",
                export.display()
            ),
            "only under",
        ),
        (
            // A link inside the folder that leads into the warehouse.
            format!(
                "COPY (SELECT 1 AS id) TO '{}'",
                sneaky.join("catalog.db").display()
            ),
            "only under",
        ),
        (
            format!(
                "COPY (SELECT 1 AS id) TO '{}'",
                import.join("x.parquet").display()
            ),
            "only under",
        ),
    ] {
        let err = refused(&mut client, &sql).await;
        assert!(
            err.contains(PERMISSION_DENIED) && err.contains(expected),
            "{sql}: {err}"
        );
    }
    assert!(!root.path().join("escaped.parquet").exists());
    assert_eq!(count(&mut client, "SELECT count(*) FROM t").await, "3");
    server.stop();

    // Locally: anything but the warehouse's own files.
    let session = Session::open(&warehouse).await.expect("open");
    for target in [warehouse.join("catalog.db"), data_file.clone()] {
        let err = session
            .sql(&format!("COPY (SELECT 1 AS id) TO '{}'", target.display()))
            .await
            .expect_err("over the warehouse");
        assert!(err.to_string().contains("inside the warehouse"), "{err}");
    }
    let results = session.sql("SELECT count(*) FROM t").await.expect("reads");
    assert_eq!(cells(&results[0].batches).expect("cells")[0][0], "3");
}

/// Processes appending to one table at once, each statement a commit.
const WRITERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_inserting_into_one_table_all_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = pitlake_sql(dir.path(), "CREATE TABLE t (p INT, i INT)");
    assert!(out.status.success(), "{out:?}");
    let script = |p: usize| {
        let path = dir.path().join(format!("w{p}.sql"));
        let inserts: String = (0..50)
            .map(|i| format!("INSERT INTO t VALUES ({p}, {i});\n"))
            .collect();
        std::fs::write(&path, inserts).expect("script");
        path
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|p| {
            Command::new(env!("CARGO_BIN_EXE_pitlake"))
                .arg("sql")
                .arg("--warehouse")
                .arg(dir.path())
                .arg("-f")
                .arg(script(p))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    for writer in writers {
        let out = writer.wait_with_output().expect("writer");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = pitlake_sql(
        dir.path(),
        "SELECT count(*), count(DISTINCT p * 100 + i) FROM t",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().nth(1),
        Some(format!("{n},{n}", n = WRITERS * 50).as_str())
    );
}

/// Runs a shell script in its own mount namespace (as root, or as a user
/// mapped to root), so it can mount a small tmpfs that vanishes with it;
/// `None` where the machine does not allow that.
fn in_mount_namespace(script: &str, env: &[(&str, &Path)]) -> Option<Output> {
    let allowed = Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        return None;
    }
    let mut command = Command::new("unshare");
    command.args(["-rm", "sh", "-c", script]);
    for (key, value) in env {
        command.env(key, value);
    }
    Some(command.output().expect("run unshare"))
}

/// Full-disk script: the warehouse on a 6 MiB tmpfs; for each amount of
/// space left, fill the disk to that, try one INSERT, record its exit code,
/// then free the space. Finally a COPY larger than the disk, and what the
/// warehouse then holds.
const FULL_DISK_SCRIPT: &str = r#"
set -u
mount -t tmpfs -o size=6m tmpfs "$MNT" || exit 90
W="$MNT/wh"
"$PITLAKE" sql --warehouse "$W" -c "CREATE TABLE t (id BIGINT, pad VARCHAR)" || exit 91
i=0
for free in 0 1 2 4 8 12 16 24 32 48 64 96 128 256 512; do
  i=$((i + 1))
  dd if=/dev/zero of="$MNT/filler" bs=4k 2>/dev/null
  truncate -s "-${free}K" "$MNT/filler"
  "$PITLAKE" sql --warehouse "$W" -c "INSERT INTO t VALUES ($i, repeat('x', 2000))" \
    >"$OUT/insert-$i.out" 2>"$OUT/insert-$i.err"
  echo "$i $?" >>"$OUT/codes"
  rm -f "$MNT/filler"
done
dd if=/dev/zero of="$MNT/filler" bs=1M count=4 2>/dev/null
"$PITLAKE" sql --warehouse "$W" -c "COPY t FROM '$OUT/big.csv'" >"$OUT/copy.out" 2>"$OUT/copy.err"
echo "copy $?" >>"$OUT/codes"
rm -f "$MNT/filler"
# Checked here: the catalog names its files by their paths on this tmpfs.
"$PITLAKE" sql --warehouse "$W" --format csv -c "SELECT id FROM t WHERE id < 1000 ORDER BY id" \
  >"$OUT/present.csv" 2>&1 || exit 92
"$PITLAKE" sql --warehouse "$W" --format csv -c 'SELECT file_path FROM "t$files"' \
  >"$OUT/referenced.csv" 2>&1 || exit 93
ls "$W/default/t/data" >"$OUT/data-files"
"#;

#[test]
fn a_full_disk_never_loses_an_acknowledged_write() {
    let out = tempfile::tempdir().expect("tempdir");
    let mnt = tempfile::tempdir().expect("mount point");
    // Larger than the whole disk: fails part-way through its data files.
    // Values that do not repeat, so Parquet cannot shrink them much.
    let mut big = String::from("id,pad\n");
    let mut x: u64 = 1;
    for i in 0..60_000 {
        let pad: String = (0..6)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                format!("{x:016x}")
            })
            .collect();
        big.push_str(&format!("{},{pad}\n", 1000 + i));
    }
    std::fs::write(out.path().join("big.csv"), big).expect("big.csv");
    let pitlake = Path::new(env!("CARGO_BIN_EXE_pitlake"));
    let Some(result) = in_mount_namespace(
        FULL_DISK_SCRIPT,
        &[
            ("MNT", mnt.path()),
            ("OUT", out.path()),
            ("PITLAKE", pitlake),
        ],
    ) else {
        eprintln!("skipped: this machine does not allow a private tmpfs (unshare -rm)");
        return;
    };
    assert!(result.status.success(), "{result:?}");
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap_or_default();
    let codes = read("codes");
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    for line in codes.lines() {
        let (what, code) = line.split_once(' ').expect("line");
        let err = match what {
            "copy" => read("copy.err"),
            i => read(&format!("insert-{i}.err")),
        };
        if code == "0" {
            if what != "copy" {
                acknowledged.push(what.to_string());
            }
        } else {
            failed += 1;
            // One line that names the cause, not a crash.
            assert_eq!(code, "1", "{what}: {err}");
            assert!(err.starts_with("error: "), "{what}: {err}");
        }
    }
    assert!(failed > 0, "the disk never filled up: {codes}");
    assert!(!acknowledged.is_empty(), "no insert succeeded: {codes}");
    // Every acknowledged row is there; no failed one is.
    let present: Vec<String> = read("present.csv")
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(present, acknowledged, "codes: {codes}");
    // No data file that no snapshot references (the failed COPY's included).
    let referenced = read("referenced.csv");
    for name in read("data-files").lines() {
        assert!(
            referenced.contains(name),
            "unreferenced data file {name} left behind; codes: {codes}"
        );
    }
}

/// Waits until a write claim and a data file of it appear in `data`.
fn wait_for_write(data: &Path, writer: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let names: Vec<String> = std::fs::read_dir(data)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        let claimed = names.iter().find_map(|n| n.strip_prefix(".writing-"));
        if let Some(prefix) = claimed
            && names
                .iter()
                .any(|n| n.starts_with(prefix) && n.ends_with(".parquet"))
        {
            return;
        }
        if let Ok(Some(status)) = writer.try_wait() {
            panic!("the COPY ended ({status}) before it was seen writing");
        }
        assert!(std::time::Instant::now() < deadline, "no write seen");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn vacuum_removes_what_a_killed_copy_left_and_spares_a_running_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let csv = dir.path().join("big.csv");
    let mut text = String::from("id,v\n");
    for i in 0..3_000_000u64 {
        text.push_str(&format!("{i},{}\n", i.wrapping_mul(2654435761) % 1_000_003));
    }
    std::fs::write(&csv, text).expect("csv");
    let out = pitlake_sql(
        &warehouse,
        "CREATE TABLE t (id BIGINT, v BIGINT); INSERT INTO t VALUES (-1, -1)",
    );
    assert!(out.status.success(), "{out:?}");
    let data = warehouse.join("default/t/data");
    let copy = || {
        Command::new(env!("CARGO_BIN_EXE_pitlake"))
            .arg("sql")
            .arg("--warehouse")
            .arg(&warehouse)
            .args(["--format", "csv"])
            .args(["-c", &format!("COPY t FROM '{}'", csv.display())])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn COPY")
    };

    // Killed part-way: its partial file stays until VACUUM.
    let mut killed = copy();
    wait_for_write(&data, &mut killed);
    killed.kill().expect("SIGKILL");
    let _ = killed.wait();
    let files_after_kill = tree(&data).len();
    assert!(
        files_after_kill >= 3,
        "claim, partial file, committed file: {:?}",
        tree(&data)
    );

    // A COPY running in another process keeps its files while VACUUM runs.
    let mut running = copy();
    wait_for_write(&data, &mut running);
    let vacuum = pitlake_sql(&warehouse, "VACUUM t");
    assert!(vacuum.status.success(), "{vacuum:?}");
    let report = String::from_utf8_lossy(&vacuum.stdout).to_string();
    let removed: Vec<&str> = report.lines().skip(1).collect();
    assert!(
        !removed.is_empty(),
        "the killed COPY's file was not removed"
    );
    let out = running.wait_with_output().expect("running COPY");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "count\n3000000"
    );

    // Every row of the finished COPY is there, and only referenced files are.
    let counted = pitlake_sql(&warehouse, "SELECT count(*), sum(v) FROM t");
    let expected: u64 = (0..3_000_000u64)
        .map(|i| i.wrapping_mul(2654435761) % 1_000_003)
        .sum::<u64>()
        - 1;
    assert_eq!(
        String::from_utf8_lossy(&counted.stdout).lines().nth(1),
        Some(format!("3000001,{expected}").as_str())
    );
    let again = pitlake_sql(&warehouse, "VACUUM");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).lines().count(),
        1,
        "{again:?}"
    );
    let referenced = pitlake_sql(&warehouse, r#"SELECT file_path FROM "t$files""#);
    let referenced = String::from_utf8_lossy(&referenced.stdout).to_string();
    for file in tree(&data) {
        let name = file.to_string_lossy().to_string();
        assert!(referenced.contains(&name), "{name} is left");
    }
}

/// A server committing a stream record by record, with background
/// compaction, while other processes read the same warehouse in a loop:
/// every reader answers, every record is there, and the table stays
/// readable (the catalog's version watch used to drop its process's SQLite
/// locks by closing catalog.db).
#[test]
fn readers_in_other_processes_never_break_a_streaming_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("wh");
    let printed = crate::python::run_script(
        "catalog_race.py",
        &[
            env!("CARGO_BIN_EXE_pitlake"),
            &warehouse.display().to_string(),
            "1500",
        ],
    );
    assert!(printed.contains("final: 1500\n"), "{printed}");
    assert!(printed.contains("reader errors: 0"), "{printed}");
}
