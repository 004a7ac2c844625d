//! `examples/online_client.py` (pyarrow.flight only: stream records, read the
//! acks, look keys up) against the real `pitlake serve`.

use std::time::Duration;

use pitlake::output::cells;

use crate::flight::{query, update};
use crate::python::run_example;
use crate::stream_kill::{PASSWORD, ServeProcess, USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_online_client_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[]);
    let mut client = server.client().await;
    update(&mut client, "CREATE SCHEMA shop").await;
    update(
        &mut client,
        "CREATE FEATURE GROUP shop.user_features (user_id BIGINT, event_time TIMESTAMP, clicks_1h BIGINT, spend_1h DOUBLE) ENTITY KEY (user_id) EVENT TIME event_time ONLINE",
    )
    .await;

    let addr = server.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_example("online_client.py", &[&addr, USER, PASSWORD])
    })
    .await
    .expect("example");
    println!("{out}");

    assert!(
        out.contains("acknowledged 3 row(s) at log position "),
        "{out}"
    );
    assert!(
        out.contains("acknowledged 1 row(s) at log position "),
        "{out}"
    );
    // The printed DataFrame: user 1 has its newer value, user 4 none.
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("lookup of [1, 2, 3, 4] in shop.user_features"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["user_id", "clicks_1h", "spend_1h"],
            vec!["1", "6.0", "24.0"],
            vec!["2", "0.0", "0.0"],
            vec!["3", "12.0", "250.0"],
            vec!["4", "NaN", "NaN"],
        ],
        "{out}"
    );

    // The same through SQL: online and, once committed (≤ 2 s), offline.
    let online = cells(
        &query(
            &mut client,
            "SELECT user_id, clicks_1h FROM online.shop.user_features WHERE user_id IN (1, 4)",
        )
        .await,
    )
    .expect("cells");
    assert_eq!(online, vec![vec!["1", "6"], vec!["4", "NULL"]]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let committed = cells(
            &query(
                &mut client,
                "SELECT sum(CAST(summary['added-records'] AS BIGINT)) FROM shop.\"user_features$snapshots\" WHERE summary['pitlake.operation'] = 'stream'",
            )
            .await,
        )
        .expect("cells");
        if committed[0][0] == "4" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not committed in 10 s: {committed:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{status}\n{log}");
}
