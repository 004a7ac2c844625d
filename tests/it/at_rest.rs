//! What a warehouse leaves on disk stays in its folder, and the folder is its
//! owner's: a query that spills writes under `<warehouse>/.spill`, so the
//! volume (or encryption) that holds the warehouse holds the spilled rows too.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use pitlake::Session;
use pitlake::sql::parse_sql;

/// Files anywhere under `dir`.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => files_under(&e.path()),
                    _ => 1,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_warehouse_is_its_owners_and_spills_inside_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("wh");
    let session = Session::open(&root)
        .await
        .expect("open")
        .with_query_memory_limit(Some(8 << 20));
    let mode = std::fs::metadata(&root).expect("root").permissions().mode();
    assert_eq!(mode & 0o077, 0, "the warehouse folder is {mode:o}");

    session
        .sql(
            "SET datafusion.execution.sort_spill_reservation_bytes = 1048576; \
             CREATE TABLE t AS SELECT value AS v, random() AS r \
             FROM generate_series(1, 1000000)",
        )
        .await
        .expect("create");
    let spill = root.join(".spill");
    assert_eq!(files_under(&spill), 0, "nothing spilled yet");
    // Sorting 1M rows (16 MB) in 8 MiB spills: a watcher counts the files
    // under the warehouse's spill folder while the query runs.
    let running = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (running, spill) = (running.clone(), spill.clone());
        std::thread::spawn(move || {
            let mut most = 0;
            while running.load(Ordering::Relaxed) {
                most = most.max(files_under(&spill));
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            most
        })
    };
    let statement = parse_sql("SELECT v FROM t ORDER BY r")
        .expect("parse")
        .remove(0);
    let mut stream = session.execute_stream(statement).await.expect("runs");
    let first = stream.next().await.expect("a batch").expect("sorted");
    let mut rows = first.num_rows();
    while let Some(batch) = stream.next().await {
        rows += batch.expect("sorted").num_rows();
    }
    assert_eq!(rows, 1_000_000);
    drop(stream);
    running.store(false, Ordering::Relaxed);
    let most = watcher.join().expect("watcher");
    assert!(
        most > 0,
        "the sort spilled somewhere else than {}",
        spill.display()
    );
    assert_eq!(files_under(&spill), 0, "spill files outlived their query");
}
