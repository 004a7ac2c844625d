//! Scans of Iceberg tables split a snapshot's files, and a large file's row
//! groups, across partitions; each row keeps its exact place in ingestion
//! order however the pieces are shared, so an ASOF JOIN's tie on (key, time)
//! still goes to the row ingested last, at the current snapshot and an older
//! one, at any number of partitions.

use pitlake::Session;
use pitlake::output::cells;

use crate::writes::row_groups;

async fn rows(session: &Session, sql: &str) -> Vec<Vec<String>> {
    let results = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    cells(&results.last().expect("a result").batches).expect("cells")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_go_to_the_row_ingested_last_at_any_number_of_partitions() {
    use iceberg::transaction::{ApplyTransactionAction, Transaction};

    let dir = tempfile::tempdir().expect("tempdir");
    let session = Session::open(dir.path()).await.expect("open");
    session
        .sql("CREATE FEATURE GROUP g (k BIGINT, t TIMESTAMP, v BIGINT, pad DOUBLE) ENTITY KEY (k) EVENT TIME t")
        .await
        .expect("create");
    // Small row groups: the first commit's one file holds dozens of them,
    // pieces of about 1 MiB each.
    let warehouse = session.warehouse().clone();
    let table = warehouse.load_table("default", "g").await.expect("load");
    let tx = Transaction::new(&table);
    let tx = tx
        .update_table_properties()
        .set("write.parquet.row-group-size-bytes".into(), "131072".into())
        .apply(tx)
        .expect("property");
    tx.commit(warehouse.catalog().as_ref())
        .await
        .expect("commit");

    // 300 keys x 5 times, each (k, t) 400 times over the file: v counts the
    // rows in the order they are written (one partition writes them), so the
    // tie's winner is the largest v of its (k, t). pad is random so the file
    // does not compress below a few MB.
    session
        .sql("SET datafusion.execution.target_partitions = 1")
        .await
        .expect("set");
    session
        .sql(
            "INSERT INTO g SELECT value % 300, to_timestamp_seconds(1704067200 + (value / 300 % 5) * 86400), value, random()
             FROM generate_series(0, 599999)",
        )
        .await
        .expect("first commit");
    let first = rows(&session, "SELECT min(snapshot_id) FROM \"g$snapshots\"").await[0][0].clone();
    // The second commit ties again with half the keys: its rows win those.
    session
        .sql(
            "INSERT INTO g SELECT value % 150, to_timestamp_seconds(1704067200 + (value / 150 % 5) * 86400), 1000000 + value, random()
             FROM generate_series(0, 1499)",
        )
        .await
        .expect("second commit");
    let groups: Vec<usize> = row_groups(&dir.path().join("default/g/data"))
        .into_values()
        .collect();
    assert!(
        groups.iter().any(|g| *g >= 20),
        "a file of many row groups: {groups:?}"
    );
    session
        .sql("CREATE TABLE labels AS SELECT DISTINCT k, t AS ts FROM g")
        .await
        .expect("labels");

    for partitions in [1, 2, 3, 4] {
        session
            .sql(&format!(
                "SET datafusion.execution.target_partitions = {partitions}"
            ))
            .await
            .expect("set");
        let plan = rows(
            &session,
            "EXPLAIN SELECT l.k, g.v FROM labels l ASOF JOIN g MATCH_CONDITION (l.ts >= g.t) ON l.k = g.k",
        )
        .await;
        let plan = plan
            .iter()
            .map(|r| r[1].clone())
            .collect::<Vec<_>>()
            .join("\n");
        let scan = plan
            .lines()
            .position(|l| l.contains("IngestOrderScanExec: table=default.g"))
            .expect("the feature group's scan");
        if partitions > 1 {
            // The repartition above the scan takes every partition it makes.
            let above = plan.lines().nth(scan - 1).unwrap_or_default();
            assert!(
                above.contains(&format!("input_partitions={partitions}")),
                "{partitions} partitions: {plan}"
            );
        }
        for (label, version, expected) in [
            ("current", String::new(), "1500"),
            (
                "first snapshot",
                format!(" FOR VERSION AS OF {first}"),
                "1500",
            ),
        ] {
            // Every label's match must be its (k, t)'s last ingested row.
            let sql = format!(
                "WITH m AS (SELECT l.k, l.ts, g.v FROM labels l ASOF JOIN g{version} g MATCH_CONDITION (l.ts >= g.t) ON l.k = g.k),
                      w AS (SELECT k, t, max(v) AS v FROM g{version} GROUP BY k, t)
                 SELECT count(*), count(*) FILTER (WHERE m.v = w.v) FROM m JOIN w ON m.k = w.k AND m.ts = w.t"
            );
            let got = rows(&session, &sql).await;
            assert_eq!(
                got,
                vec![vec![expected.to_string(), expected.to_string()]],
                "{label}, {partitions} partitions"
            );
        }
        // A plain scan and a scan of the older snapshot read every row once.
        let counts = rows(
            &session,
            &format!(
                "SELECT (SELECT count(*) FROM g) AS a, (SELECT count(DISTINCT v) FROM g) AS b,
                        (SELECT count(*) FROM g FOR VERSION AS OF {first}) AS c,
                        (SELECT sum(v) FROM g FOR VERSION AS OF {first}) AS d"
            ),
        )
        .await;
        assert_eq!(
            counts,
            vec![vec![
                "601500".to_string(),
                "601500".to_string(),
                "600000".to_string(),
                "179999700000".to_string()
            ]],
            "{partitions} partitions"
        );
    }

    // EXPLAIN ANALYZE says what the scan read: its rows and its pieces.
    let plan = rows(&session, "EXPLAIN ANALYZE SELECT count(v) FROM g").await;
    let scan = plan
        .iter()
        .flat_map(|r| r[1].lines().map(str::to_string).collect::<Vec<_>>())
        .find(|l| l.contains("IngestOrderScanExec: table=default.g"))
        .expect("the scan in the plan");
    assert!(scan.contains("output_rows=601.5 K"), "{scan}");
    let pieces: usize = scan
        .split("pieces=")
        .nth(1)
        .and_then(|rest| rest.split([',', ']']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of pieces: {scan}"));
    assert!(
        pieces > 4,
        "a file of many row groups is read in pieces: {scan}"
    );
}
