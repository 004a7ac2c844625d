//! The seeds' governed workflow, played over the real server by the real
//! ADBC driver from Python (`tests/python/governed_workflow.py`): an admin
//! onboards a producer and a consumer team; the producer publishes a feature
//! group under a row filter and a mask; the consumer is refused on every read
//! path, requests access, is approved, builds and reproduces a training set,
//! and never meets a hidden row or a masked value; the admin audits it.

use crate::python::run_script;
use crate::stream_kill::{PASSWORD, ServeProcess, USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_producer_and_consumer_play_the_governed_workflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(&dir.path().join("wh"), &[]);
    let uri = format!("grpc://{}", server.addr);
    let out = tokio::task::spawn_blocking(move || {
        run_script("governed_workflow.py", &[&uri, USER, PASSWORD])
    })
    .await
    .expect("script");
    assert!(out.contains("OK"), "{out}");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// A drop that races a PUBLISH can leave the publication behind (the
/// publisher checked the group before the drop and wrote after its cleanup):
/// a group made later under the name must not inherit it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_does_not_inherit_what_a_racing_drop_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = pitlake::Session::open(dir.path().join("wh"))
        .await
        .expect("open");
    let name = pitlake::catalog::TableName::new("s", "g").expect("name");
    let sharing = session.store().sharing();
    // What the race leaves: a publication with auto_approve, a pending
    // request, for a name with no group.
    sharing
        .publish(&name, true, "pitlake")
        .await
        .expect("publish");
    let carol = pitlake::access::Grantee::User("carol".into());
    sharing
        .request(&name, &carol, "carol", "left over")
        .await
        .expect("request");
    session
        .sql(
            "CREATE SCHEMA s; \
             CREATE FEATURE GROUP s.g (k BIGINT, t TIMESTAMP) ENTITY KEY (k) EVENT TIME t",
        )
        .await
        .expect("create");
    assert!(sharing.published().await.expect("published").is_empty());
    assert!(sharing.list().await.expect("requests").is_empty());
}
