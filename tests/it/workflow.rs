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
