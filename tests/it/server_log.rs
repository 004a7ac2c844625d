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
    assert!(
        server.wait_for_log("code=InvalidArgument", Duration::from_secs(10)),
        "no line for the refused call:\n{}",
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
    assert!(
        log.contains("FORGED line") && !log.lines().any(|l| l.starts_with("FORGED")),
        "a client's line break started a log line:\n{log}"
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
