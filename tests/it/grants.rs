//! Privileges through the real server: what a user may not read does not
//! exist for them on any path (SQL, time travel, ASOF JOIN, views, metadata
//! tables, listings, online lookups); writes and DDL need their grant; owners
//! and admins grant.

use arrow_flight::Action as FlightAction;
use arrow_flight::sql::client::FlightSqlServiceClient;
use tonic::transport::Channel;

use crate::flight::query;
use crate::stream_kill::ServeProcess;

type Client = FlightSqlServiceClient<Channel>;

async fn run(client: &mut Client, sql: &str) -> Result<(), String> {
    client
        .execute_update(sql.to_string(), None)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn read(client: &mut Client, sql: &str) -> Result<usize, String> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = 0;
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("no ticket")?;
        let mut stream = client.do_get(ticket).await.map_err(|e| e.to_string())?;
        use futures::StreamExt;
        while let Some(batch) = stream.next().await {
            rows += batch.map_err(|e| e.to_string())?.num_rows();
        }
    }
    Ok(rows)
}

fn hidden(result: Result<usize, String>, what: &str) {
    let err = result.expect_err(what);
    assert!(
        err.contains("not found") || err.contains("does not exist"),
        "{what}: {err}"
    );
}

async fn lookup(client: &mut Client, group: &str) -> Result<(), String> {
    let body = serde_json::json!({ "group": group, "keys": [1] });
    client
        .do_action(FlightAction {
            r#type: "lookup".into(),
            body: body.to_string().into(),
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_and_change_only_what_they_are_granted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[]);
    let mut admin = server.client().await;
    for sql in [
        "CREATE SCHEMA s",
        "CREATE TABLE s.t (k BIGINT, v DOUBLE)",
        "INSERT INTO s.t VALUES (1, 0.5)",
        "CREATE FEATURE GROUP s.fg (k BIGINT, ts TIMESTAMP, f DOUBLE) ENTITY KEY (k) EVENT TIME ts ONLINE",
        "INSERT INTO s.fg VALUES (1, '2024-01-01', 1.0)",
        "CREATE VIEW s.v AS SELECT * FROM s.fg",
        "CREATE ROLE analysts",
        "CREATE USER carol PASSWORD 'c4rol-secret' IN ROLE analysts",
    ] {
        run(&mut admin, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let mut carol = server
        .client_as("carol", "c4rol-secret")
        .await
        .expect("carol");

    // Nothing granted: nothing there, on every path.
    hidden(read(&mut carol, "SELECT * FROM s.t").await, "plain read");
    hidden(
        read(&mut carol, "SELECT * FROM \"s\".\"t$snapshots\"").await,
        "metadata table",
    );
    hidden(
        read(
            &mut carol,
            "SELECT * FROM s.fg FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01 00:00:00'",
        )
        .await,
        "time travel",
    );
    hidden(
        read(&mut carol, "SELECT * FROM online.s.fg").await,
        "online table",
    );
    hidden(
        read(&mut carol, "SELECT * FROM s.v").await,
        "a view over it",
    );
    let err = lookup(&mut carol, "s.fg").await.expect_err("lookup");
    assert!(err.contains("does not exist"), "{err}");
    let listed = read(
        &mut carol,
        "SELECT * FROM information_schema.tables WHERE table_schema = 's'",
    )
    .await
    .expect("listing");
    assert_eq!(listed, 0, "carol lists tables she may not read");
    // The admin's lookup loads the group into the online store.
    read(&mut admin, "SELECT * FROM online.s.fg WHERE k = 1")
        .await
        .expect("admin lookup");
    let status = "SELECT * FROM system.online_status WHERE table_name = 's.fg'";
    assert_eq!(read(&mut admin, status).await.expect("admin status"), 1);
    assert_eq!(
        read(&mut carol, status).await.expect("status"),
        0,
        "carol sees the online status of a group she may not read"
    );
    assert_eq!(
        read(&mut carol, "SHOW FEATURE GROUPS").await.expect("show"),
        0
    );
    let err = run(&mut carol, "INSERT INTO s.t VALUES (2, 1.0)")
        .await
        .expect_err("insert");
    assert!(err.contains("does not exist"), "{err}");

    // SELECT to her role: she reads, may not write.
    run(&mut admin, "GRANT SELECT ON TABLE s.t TO ROLE analysts")
        .await
        .expect("grant");
    assert_eq!(
        read(&mut carol, "SELECT * FROM s.t")
            .await
            .expect("granted"),
        1
    );
    let err = run(&mut carol, "INSERT INTO s.t VALUES (2, 1.0)")
        .await
        .expect_err("insert");
    assert!(
        err.contains("permission denied: carol may not insert into s.t"),
        "{err}"
    );
    // ... and an ASOF JOIN still finds no hidden feature group.
    hidden(
        read(
            &mut carol,
            "SELECT * FROM s.t l ASOF JOIN s.fg f MATCH_CONDITION (l.v >= f.f) ON l.k = f.k",
        )
        .await,
        "ASOF JOIN right side",
    );

    // INSERT on the schema to her: she writes.
    run(&mut admin, "GRANT INSERT ON SCHEMA s TO USER carol")
        .await
        .expect("grant");
    run(&mut carol, "INSERT INTO s.t VALUES (2, 1.0)")
        .await
        .expect("insert");

    // CREATE needs its grant; what she makes she owns and may grant.
    let err = run(&mut carol, "CREATE TABLE s.mine (x INT)")
        .await
        .expect_err("create");
    assert!(err.contains("permission denied"), "{err}");
    run(&mut admin, "GRANT CREATE ON SCHEMA s TO USER carol")
        .await
        .expect("grant");
    run(&mut carol, "CREATE TABLE s.mine (x INT)")
        .await
        .expect("create");
    run(&mut carol, "INSERT INTO s.mine VALUES (7)")
        .await
        .expect("own insert");
    assert_eq!(
        read(&mut carol, "SELECT * FROM s.mine")
            .await
            .expect("own read"),
        1
    );
    let err = run(&mut carol, "GRANT SELECT ON TABLE s.fg TO USER carol")
        .await
        .expect_err("not hers");
    assert!(err.contains("permission denied"), "{err}");
    let err = run(&mut carol, "DROP TABLE s.t")
        .await
        .expect_err("not hers");
    assert!(err.contains("permission denied"), "{err}");
    let err = run(&mut carol, "CREATE SCHEMA other")
        .await
        .expect_err("admin only");
    assert!(err.contains("permission denied"), "{err}");
    let shown = read(&mut carol, "SHOW GRANTS").await.expect("her grants");
    assert_eq!(shown, 3, "SELECT to her role, INSERT and CREATE to her");

    // Revoked: gone again at her next statement.
    run(&mut admin, "REVOKE SELECT ON TABLE s.t FROM ROLE analysts")
        .await
        .expect("revoke");
    hidden(
        read(&mut carol, "SELECT * FROM s.t").await,
        "after the revoke",
    );
    run(&mut carol, "DROP TABLE s.mine")
        .await
        .expect("her own table");

    // The admin still sees everything.
    assert_eq!(
        read(&mut admin, "SELECT * FROM s.t").await.expect("admin"),
        2
    );
    query(&mut admin, "SELECT 1").await;
    drop((admin, carol));
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}
