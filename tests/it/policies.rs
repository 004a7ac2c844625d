//! Row filters and column masks through the real server, as a hostile reader
//! would probe them: on every read path (plain, aggregate, ASOF JOIN, time
//! travel, the online store over SQL and the lookup action, prepared
//! statements, CREATE TABLE AS, COPY TO, metadata tables, error messages) a
//! reader under a row filter never meets a hidden row or a masked value.

use arrow::array::{Int64Array, RecordBatch};
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::Action as FlightAction;
use futures::TryStreamExt;

use crate::flight::{query, try_query, update};
use crate::small_query::run_prepared;
use crate::stream_kill::ServeProcess;

/// What a hidden row holds; no answer to the reader may contain any of it.
const HIDDEN: [&str; 3] = ["hidden_region", "secret@hidden.example", "777"];
/// The masked column's stored value of a visible row.
const UNMASKED: &str = "visible@eu.example";

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches)
        .expect("printable")
        .to_string()
}

/// Panics when `answer` shows anything of a hidden row or a masked value.
fn clean(answer: &str, path: &str) {
    for secret in HIDDEN.iter().chain([&UNMASKED]) {
        assert!(
            !answer.contains(secret),
            "{path} shows {secret:?} to the reader:\n{answer}"
        );
    }
}

fn lookup_body(keys: &[i64]) -> String {
    serde_json::json!({ "group": "s.fg", "keys": keys }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_under_a_row_filter_never_meets_a_hidden_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = dir.path().join("export");
    std::fs::create_dir_all(&export).expect("export dir");
    let export_arg = export.to_string_lossy().to_string();
    let server = ServeProcess::start(&dir.path().join("wh"), &["--export-dir", &export_arg]);
    let mut admin = server.client().await;
    for sql in [
        "CREATE SCHEMA s",
        "CREATE FEATURE GROUP s.fg (k BIGINT, region VARCHAR, ts TIMESTAMP, cnt BIGINT, email VARCHAR) \
         ENTITY KEY (k) EVENT TIME ts",
        // k 1: visible. k 2: hidden. k 3: an older visible row, a newer hidden one.
        "INSERT INTO s.fg VALUES \
         (1, 'eu', '2026-01-01', 3, 'visible@eu.example'), \
         (2, 'hidden_region', '2026-01-01', 777, 'secret@hidden.example'), \
         (3, 'eu', '2026-01-01', 4, 'visible@eu.example'), \
         (3, 'hidden_region', '2026-01-02', 777, 'secret@hidden.example')",
        "ALTER FEATURE GROUP s.fg SET ONLINE",
        "CREATE TABLE s.labels (k BIGINT, t TIMESTAMP)",
        "INSERT INTO s.labels VALUES (1, '2026-01-05'), (2, '2026-01-05'), (3, '2026-01-05')",
        "CREATE ROLE eu_analysts",
        "CREATE USER carol PASSWORD 'c4rol-secret' IN ROLE eu_analysts",
        "GRANT SELECT ON SCHEMA s TO ROLE eu_analysts",
        "GRANT CREATE ON SCHEMA s TO USER carol",
    ] {
        update(&mut admin, sql).await;
    }
    // The probe that can fail: 1 / (cnt - 777) divides by zero on a hidden row.
    let probe = "SELECT k FROM s.fg WHERE 1 / (cnt - 777) > -1000";
    let err = try_query(&mut admin, probe)
        .await
        .expect_err("divides by zero without a filter");
    assert!(err.to_lowercase().contains("divide by zero"), "{err}");

    update(
        &mut admin,
        "ALTER FEATURE GROUP s.fg SET ROW FILTER (region = 'eu')",
    )
    .await;
    update(
        &mut admin,
        "ALTER FEATURE GROUP s.fg ALTER COLUMN email SET MASK ('***')",
    )
    .await;
    let mut carol = server
        .client_as("carol", "c4rol-secret")
        .await
        .expect("carol");

    // Plain read, aggregates, the error probe.
    let rows = query(&mut carol, "SELECT * FROM s.fg ORDER BY k").await;
    let shown = text(&rows);
    clean(&shown, "SELECT *");
    assert_eq!(
        rows.iter().map(|b| b.num_rows()).sum::<usize>(),
        2,
        "{shown}"
    );
    assert!(shown.contains("***"), "{shown}");
    let count = query(
        &mut carol,
        "SELECT count(*), sum(cnt), max(region) FROM s.fg",
    )
    .await;
    clean(&text(&count), "aggregates");
    assert!(text(&count).contains("| 2 "), "{}", text(&count));
    let probed = try_query(&mut carol, probe)
        .await
        .expect("no hidden row to divide by");
    clean(&text(&probed), "the error probe");
    let err = try_query(&mut carol, "SELECT CAST(region AS BIGINT) FROM s.fg")
        .await
        .expect_err("eu is no number");
    clean(&err, "a cast error");
    let err = try_query(&mut carol, "SELECT CAST(email AS BIGINT) FROM s.fg")
        .await
        .expect_err("*** is no number");
    clean(&err, "a cast error on the masked column");
    let masked_predicate = query(
        &mut carol,
        "SELECT count(*) FROM s.fg WHERE email = 'visible@eu.example'",
    )
    .await;
    assert!(
        text(&masked_predicate).contains("| 0 "),
        "a predicate on a masked column sees the mask: {}",
        text(&masked_predicate)
    );

    // ASOF JOIN: k 3 matches its visible row, k 2 nothing.
    let asof = query(
        &mut carol,
        "SELECT l.k, f.cnt, f.region FROM s.labels l ASOF JOIN s.fg f \
         MATCH_CONDITION (l.t >= f.ts) ON l.k = f.k ORDER BY l.k",
    )
    .await;
    clean(&text(&asof), "ASOF JOIN");
    let counts: Vec<Option<i64>> = asof
        .iter()
        .flat_map(|b| {
            let c = b
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("cnt");
            c.iter().collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(counts, vec![Some(3), None, Some(4)], "{}", text(&asof));

    // Time travel.
    let old = query(&mut carol, "SELECT * FROM s.fg FOR TIMESTAMP AS OF now()").await;
    clean(&text(&old), "time travel");

    // The online store over SQL and over the lookup action.
    let online = query(&mut carol, "SELECT * FROM online.s.fg WHERE k IN (1, 2, 3)").await;
    clean(&text(&online), "online SQL");
    let result = carol
        .do_action(FlightAction {
            r#type: "lookup".into(),
            body: lookup_body(&[1, 2, 3]).into(),
        })
        .await
        .expect("lookup")
        .try_collect::<Vec<_>>()
        .await
        .expect("lookup result");
    let reader = arrow::ipc::reader::StreamReader::try_new(
        std::io::Cursor::new(result[0].body.to_vec()),
        None,
    )
    .expect("ipc");
    let looked_up: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let shown = text(&looked_up);
    clean(&shown, "the lookup action");
    assert_eq!(
        looked_up.iter().map(|b| b.num_rows()).sum::<usize>(),
        3,
        "one row per key asked: {shown}"
    );

    // A prepared statement, its parameter naming the hidden entity.
    let mut prepared = carol
        .prepare("SELECT * FROM s.fg WHERE k = $1".into(), None)
        .await
        .expect("prepare");
    let rows = run_prepared(&mut prepared, &mut carol, 2)
        .await
        .expect("rows");
    clean(&text(&rows), "a prepared statement");
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0);

    // What she copies out holds only what she sees.
    update(&mut carol, "CREATE TABLE s.mine AS SELECT * FROM s.fg").await;
    let copied = query(&mut admin, "SELECT * FROM s.mine").await;
    clean(&text(&copied), "CREATE TABLE AS");
    let out = export.join("fg.csv");
    update(
        &mut carol,
        &format!("COPY (SELECT * FROM s.fg) TO '{}'", out.display()),
    )
    .await;
    let file = std::fs::read_to_string(&out).expect("exported file");
    clean(&file, "COPY TO");
    assert!(file.contains("***"), "{file}");

    // Metadata tables, policy changes and switching users are not hers.
    let err = try_query(&mut carol, "SELECT * FROM \"s\".\"fg$files\"")
        .await
        .expect_err("files");
    assert!(err.contains("permission denied"), "{err}");
    let err = carol
        .execute_update("ALTER FEATURE GROUP s.fg DROP ROW FILTER".into(), None)
        .await
        .expect_err("not hers");
    assert!(err.to_string().contains("permission denied"), "{err}");
    let err = carol
        .execute_update("SET SESSION AUTHORIZATION pitlake".into(), None)
        .await
        .expect_err("not an admin");
    assert!(err.to_string().contains("permission denied"), "{err}");

    // The server still answers the admin, who sees what the filter lets
    // through for them (it applies to admins too).
    let all = query(&mut admin, "SELECT count(*) FROM s.fg").await;
    assert!(text(&all).contains("| 2 "), "{}", text(&all));
    update(&mut admin, "ALTER FEATURE GROUP s.fg DROP ROW FILTER").await;
    let all = query(&mut admin, "SELECT count(*) FROM s.fg").await;
    assert!(text(&all).contains("| 4 "), "{}", text(&all));

    // The audit log: a wrong password is recorded with the address it came
    // from; carol reads only her own events; the admin reads all of them,
    // and they are still there after the server is killed and started again.
    assert!(server.client_as("carol", "wrong-password").await.is_err());
    let users = text(
        &query(
            &mut carol,
            "SELECT DISTINCT user_name FROM system.audit_log",
        )
        .await,
    );
    assert!(
        users.contains("carol") && !users.contains("pitlake") && !users.contains("alice"),
        "{users}"
    );
    let audit = "SELECT action, client, object, allowed FROM system.audit_log \
                 WHERE user_name = 'carol' ORDER BY event_time";
    let events = text(&query(&mut admin, audit).await);
    for expected in [
        "sign_in_failed",
        "127.0.0.1",
        "| read ",
        "s.fg",
        "| denied",
        "| write ",
    ] {
        assert!(
            events.contains(expected),
            "no {expected:?} in carol's events:\n{events}"
        );
    }
    let warehouse = dir.path().join("wh");
    drop(admin);
    drop(carol);
    drop(server);
    let server = ServeProcess::start(&warehouse, &[]);
    let mut admin = server.client().await;
    let after = text(&query(&mut admin, audit).await);
    assert_eq!(after, events, "the audit log after a restart");
}
