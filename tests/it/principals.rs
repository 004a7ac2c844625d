//! Users and roles of the warehouse, through the real server: made by an
//! admin, signed in with, refused to others, hashed at rest, kept across
//! restarts, and never written to the log.

use std::time::Duration;

use arrow::array::{Array, BooleanArray, StringArray};

use crate::flight::query;
use crate::stream_kill::ServeProcess;

async fn run(
    client: &mut arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
) -> Result<(), String> {
    client
        .execute_update(sql.to_string(), None)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_makes_users_who_can_do_only_what_they_may() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[]);
    let mut admin = server.client().await;
    run(&mut admin, "CREATE ROLE analysts").await.expect("role");
    run(
        &mut admin,
        "CREATE USER carol PASSWORD 'c4rol-secret' IN ROLE analysts",
    )
    .await
    .expect("user");

    let mut carol = server
        .client_as("carol", "c4rol-secret")
        .await
        .expect("carol signs in");
    let who = query(
        &mut carol,
        "SELECT current_user() AS u, is_member('analysts') AS a, is_member('admin') AS b",
    )
    .await;
    let batch = &who[0];
    let user = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("text");
    assert_eq!(user.value(0), "carol");
    let flags = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("bool")
            .value(0)
    };
    assert!(flags(1) && !flags(2));

    // Not an admin: no principal statements but her own password.
    for sql in [
        "CREATE USER mallory PASSWORD 'x'",
        "GRANT ROLE admin TO carol",
        "ALTER USER alice PASSWORD 'taken-over'",
        "DROP USER alice",
        "SHOW USERS",
    ] {
        let err = run(&mut carol, sql).await.expect_err(sql);
        assert!(
            err.contains("does not have permission")
                && err.contains("permission denied: carol may not"),
            "{sql}: {err}"
        );
    }
    assert!(server.client_as("alice", "taken-over").await.is_err());
    run(&mut carol, "ALTER USER carol PASSWORD 'n3w-secret'")
        .await
        .expect("her own password");
    assert!(server.client_as("carol", "c4rol-secret").await.is_err());
    let mut carol = server
        .client_as("carol", "n3w-secret")
        .await
        .expect("the new password");
    query(&mut carol, "SELECT 1").await;

    // Mistakes named.
    let err = run(&mut admin, "GRANT ROLE nosuch TO carol")
        .await
        .expect_err("no role");
    assert!(err.contains("role nosuch does not exist"), "{err}");
    let err = run(&mut admin, "CREATE USER carol PASSWORD 'again'")
        .await
        .expect_err("twice");
    assert!(err.contains("user carol already exists"), "{err}");
    let err = run(&mut admin, "CREATE USER \"../x\" PASSWORD 'p'")
        .await
        .expect_err("bad name");
    assert!(err.contains("../x"), "{err}");
    let err = run(&mut admin, "DROP ROLE admin")
        .await
        .expect_err("admin stays");
    assert!(err.contains("cannot be dropped"), "{err}");
    let err = run(&mut admin, "REVOKE ROLE admin FROM alice")
        .await
        .expect_err("last admin");
    assert!(err.contains("last member of admin"), "{err}");

    // A password not in single quotes is refused, and not quoted back by
    // the parse error (which the log records too).
    for sql in [
        "CREATE USER mallory PASSWORD unqu0ted",
        "CREATE USER mallory PASSWORD 98765432123",
        "ALTER USER alice PASSWORD \"dbl-qu0ted\"",
    ] {
        let err = run(&mut admin, sql).await.expect_err(sql);
        assert!(err.contains("single-quoted string"), "{sql}: {err}");
    }

    // Dropped: no more sign-ins.
    run(&mut admin, "DROP USER carol").await.expect("drop");
    assert!(server.client_as("carol", "n3w-secret").await.is_err());
    drop((admin, carol));
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    for secret in [
        "c4rol-secret",
        "n3w-secret",
        "taken-over",
        "unqu0ted",
        "dbl-qu0ted",
        "98765432123",
    ] {
        assert!(!log.contains(secret), "a password reached the log:\n{log}");
    }
    // At rest only hashes.
    let catalog = std::fs::read(dir.path().join("catalog.db")).expect("catalog");
    let text = String::from_utf8_lossy(&catalog);
    assert!(!text.contains("s3cret") && text.contains("$argon2id$"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_makes_an_admin_once_and_users_outlive_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start_without_seeds(dir.path());
    assert!(
        server.wait_for_log(
            "created user pitlake (role admin), password ",
            Duration::from_secs(30)
        ),
        "{}",
        server.log()
    );
    let log = server.log();
    let password = log
        .split("created user pitlake (role admin), password ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .expect("the password")
        .to_string();
    let mut admin = server
        .client_as("pitlake", &password)
        .await
        .expect("the generated admin signs in");
    run(&mut admin, "CREATE USER dave PASSWORD 'd4ve-pw'")
        .await
        .expect("user");
    drop(admin);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");

    let server = ServeProcess::start_without_seeds(dir.path());
    let mut dave = server
        .client_as("dave", "d4ve-pw")
        .await
        .expect("dave after a restart");
    query(&mut dave, "SELECT 1").await;
    server
        .client_as("pitlake", &password)
        .await
        .expect("the admin after a restart");
    drop(dave);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(
        !log.contains("created user"),
        "a second password was made:\n{log}"
    );
}

/// Roles are read again before every statement, wherever they were changed:
/// a user demoted (even one named `pitlake`, like the local admin) or
/// demoted by another process loses the role at once, a dropped user's
/// token stops working, and the last admin cannot be dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demoted_and_dropped_users_lose_their_rights_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &[]);
    let mut admin = server.client().await;
    for sql in [
        "CREATE USER pitlake PASSWORD 'p1tlake-pw' IN ROLE admin",
        "CREATE USER bob PASSWORD 'b0b-pw' IN ROLE admin",
        "CREATE USER carol PASSWORD 'c4rol-pw'",
    ] {
        run(&mut admin, sql).await.expect(sql);
    }
    let mut pitlake = server
        .client_as("pitlake", "p1tlake-pw")
        .await
        .expect("pitlake signs in");
    let mut bob = server.client_as("bob", "b0b-pw").await.expect("bob");
    let mut carol = server.client_as("carol", "c4rol-pw").await.expect("carol");
    query(&mut pitlake, "SHOW USERS").await;
    query(&mut bob, "SHOW USERS").await;
    query(&mut carol, "SELECT 1").await;

    // Demoted by another process on the same warehouse (this process
    // has changed nothing since bob signed in).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pitlake"))
        .arg("sql")
        .arg("--warehouse")
        .arg(dir.path())
        .args(["-c", "REVOKE ROLE admin FROM bob"])
        .output()
        .expect("pitlake sql");
    assert!(out.status.success(), "{out:?}");
    let err = run(&mut bob, "CREATE USER mallory PASSWORD 'm4llory'")
        .await
        .expect_err("no longer an admin");
    assert!(err.contains("permission denied: bob may not"), "{err}");

    // Demoted by this process.
    run(&mut admin, "REVOKE ROLE admin FROM pitlake")
        .await
        .expect("revoke");
    let err = run(&mut pitlake, "CREATE USER mallory PASSWORD 'm4llory'")
        .await
        .expect_err("no longer an admin");
    assert!(err.contains("permission denied: pitlake may not"), "{err}");

    // Dropped: the token stops working, for queries and metadata alike.
    run(&mut admin, "DROP USER carol").await.expect("drop");
    let err = carol
        .execute("SELECT 1".to_string(), None)
        .await
        .expect_err("a dropped user's token");
    assert!(err.to_string().contains("the user was dropped"), "{err}");
    let tables = carol
        .get_tables(arrow_flight::sql::CommandGetTables::default())
        .await
        .expect("describing a listing needs no session");
    let ticket = tables.endpoint[0].ticket.clone().expect("ticket");
    let err = carol.do_get(ticket).await.expect_err("listing the tables");
    assert!(err.to_string().contains("the user was dropped"), "{err}");

    // The last admin stays.
    let err = run(&mut admin, "DROP USER alice")
        .await
        .expect_err("the last admin");
    assert!(err.contains("alice is the last member of admin"), "{err}");
    query(&mut admin, "SHOW USERS").await;
    drop((admin, pitlake, bob, carol));
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// Two admins revoking each other's role at the same moment: one may win,
/// never both, so the warehouse always keeps an admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_revoking_each_other_at_once_leave_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = pitlake::Session::open(dir.path()).await.expect("open");
    let principals = session.store().principals().clone();
    let admins = || async {
        let roles = principals.roles().await.expect("roles");
        let members = roles
            .into_iter()
            .find(|(role, _)| role == "admin")
            .map(|(_, members)| members)
            .unwrap_or_default();
        members
            .split(", ")
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let admin = vec!["admin".to_string()];
    principals
        .create_user("first", "pw-of-an-admin", &admin)
        .await
        .expect("admin");
    for round in 0..20 {
        // Exactly two admins race to revoke each other.
        let new = format!("admin{round}");
        principals
            .create_user(&new, "pw-of-an-admin", &admin)
            .await
            .expect("admin");
        let old = admins().await;
        assert_eq!(old.len(), 2, "{old:?}");
        let _ = tokio::join!(
            principals.revoke_role("admin", &old[0]),
            principals.revoke_role("admin", &old[1]),
        );
        let left = admins().await;
        assert!(!left.is_empty(), "round {round}: no admin left");
        if left.len() == 2 {
            principals
                .revoke_role("admin", &left[0])
                .await
                .expect("one of two");
        }
    }
}
