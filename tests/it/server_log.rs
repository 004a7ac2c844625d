//! The server's log, as an operator reads it: one line per Flight call with
//! its code, the client's mistakes not reported as the server's errors, and
//! `RUST_LOG` deciding what is written.

use std::time::Duration;

use crate::flight::query;
use crate::stream_kill::ServeProcess;

fn request_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("pitlake::request"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_leaves_one_line_with_its_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[]);
    let mut client = server.client().await;
    query(&mut client, "SELECT 1").await;
    let refused = client
        .execute("SELEC 1".to_string(), None)
        .await
        .expect_err("a syntax error");
    assert!(refused.to_string().contains("syntax error"), "{refused}");
    // A name with a line break: its error quotes it, and the log must not
    // take the rest for a line of its own.
    client
        .execute("SELECT * FROM \"nowhere\nFORGED line\"".to_string(), None)
        .await
        .expect_err("no such table");
    // An unknown action: the client's name is masked in the log, pitlake's
    // own (what the client should have asked for) are not.
    let unknown = client
        .do_action(arrow_flight::Action::new("secret-action", ""))
        .await
        .expect_err("an unknown action")
        .to_string();
    assert!(
        unknown.contains("lookup") && unknown.contains("ping"),
        "{unknown}"
    );
    assert!(
        server.wait_for_log("unknown action", Duration::from_secs(10)),
        "no line for the unknown action:\n{}",
        server.log()
    );
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");

    let lines = request_lines(&log);
    for call in ["handshake", "get_flight_info", "do_get"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("call=\"{call}\"")) && l.contains("code=Ok")),
            "no successful {call} line in:\n{log}"
        );
    }
    let refused: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("code=InvalidArgument") && l.contains("syntax error"))
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    // Quoted text is masked in the log (it may be data), line breaks and all.
    assert!(
        !log.contains("FORGED"),
        "a client's quoted text reached the log:\n{log}"
    );
    let unknown = log
        .lines()
        .find(|l| l.contains("unknown action"))
        .expect("the unknown action's line");
    assert!(
        !unknown.contains("secret-action")
            && unknown.contains("lookup and ping besides those of Flight SQL)"),
        "{unknown}"
    );
    // The client's mistake is not the server's error.
    assert!(
        !log.lines().any(|l| l.contains("ERROR")),
        "a client's mistake was logged as an error:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_turns_the_request_lines_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start_with_env(
        dir.path(),
        &[],
        &[("RUST_LOG", "info,pitlake::request=off")],
    );
    let mut client = server.client().await;
    query(&mut client, "SELECT 1").await;
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(request_lines(&log).is_empty(), "{log}");
    assert!(log.contains("listening on"), "{log}");
}

/// A write-ahead log damaged on disk is the server's problem, not the
/// client's: the client gets DATA_LOSS naming the file, the operator an
/// error line, and the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stream_log_is_data_loss_and_an_error_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let session = pitlake::Session::open(dir.path()).await.expect("open");
        session
            .sql(
                "CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t ONLINE;
                 INSERT INTO fg VALUES (1, '2024-01-01', 0.5)",
            )
            .await
            .expect("a streamed insert");
        session.store().streams().close().await.expect("close");
    }
    let log_dir = dir.path().join("_streams/default/fg");
    let segment = std::fs::read_dir(&log_dir)
        .expect("the group's log")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read segment");
    bytes[..8].copy_from_slice(b"GARBAGE!");
    std::fs::write(&segment, &bytes).expect("damage the segment");

    let server = ServeProcess::start(dir.path(), &[]);
    let mut client = server.client().await;
    let err = client
        .execute_update("INSERT INTO fg VALUES (2, '2024-01-02', 0.7)".into(), None)
        .await
        .expect_err("the group's log cannot open");
    let text = err.to_string();
    assert!(
        text.contains("DataLoss") || text.contains("data loss"),
        "{text}"
    );
    assert!(text.contains(".wal"), "the status names the file: {text}");
    // Still answering.
    query(&mut client, "SELECT 1").await;
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("cause=Corrupt") && l.contains(".wal")),
        "no error line for the damaged log:\n{log}"
    );
    assert!(
        request_lines(&log)
            .iter()
            .any(|l| l.contains("call=\"do_put\"") && l.contains("code=DataLoss")),
        "{log}"
    );
}

/// A server whose stderr nobody reads (a supervisor that never drains the
/// pipe) keeps answering: its log lines wait in a bounded queue or are
/// dropped, they do not stall requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_never_stalls_requests() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().expect("tempdir");
    let alice = format!(
        "{}:{}",
        crate::stream_kill::USER,
        crate::stream_kill::PASSWORD
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_pitlake"))
        .env_remove("RUST_LOG")
        .args(["serve", "--warehouse"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--user", &alice])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pitlake serve");
    // Read up to the address, then never again: the pipe (64 KiB) fills.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("stderr") > 0,
            "no address"
        );
        if let Some(rest) = line.split("listening on grpc://").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    let mut client = crate::stream_kill::try_connect(
        addr.parse().expect("address"),
        crate::stream_kill::USER,
        crate::stream_kill::PASSWORD,
    )
    .await
    .expect("connect");
    // Each query logs two lines of about 150 bytes: 1500 queries are over
    // 400 KB of log, several times what the pipe holds.
    let answered = tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..1500 {
            query(&mut client, "SELECT 1").await;
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    drop(stderr);
    assert!(answered.is_ok(), "the server stalled on its log");
}
