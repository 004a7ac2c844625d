//! Streaming ingest across a crash: the real `pitlake serve` binary is killed
//! with SIGKILL in the middle of a DoPut stream and restarted on the same
//! warehouse. Every acknowledged record must then be in the table exactly
//! once, counted through pitlake (Flight SQL) and through pyiceberg, and be
//! served by the online lookup; unacknowledged records may be there or not,
//! but never twice.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{Action, FlightDescriptor};
use futures::{SinkExt, StreamExt, TryStreamExt};
use pitlake::output::cells;
use tonic::transport::Channel;

use crate::flight::{query, update};
use crate::python::run_script;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret";

/// A `pitlake serve` process (the real binary) on a free loopback port.
pub struct ServeProcess {
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread draining stderr into `log`: done once the process exits.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts `pitlake serve` on `warehouse` with user alice and `extra`
    /// options; returns once it listens.
    pub fn start(warehouse: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(warehouse, extra, &[])
    }

    /// [`Self::start`] with environment variables for the process.
    pub fn start_with_env(warehouse: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let alice = format!("{USER}:{PASSWORD}");
        let mut args = vec!["--user", &alice];
        args.extend_from_slice(extra);
        Self::spawn(warehouse, &args, env)
    }

    /// A server given no `--user`: it signs in the warehouse's own users.
    pub fn start_without_seeds(warehouse: &Path) -> Self {
        Self::spawn(warehouse, &[], &[])
    }

    fn spawn(warehouse: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pitlake"))
            // The log's content is part of what tests check: the caller's
            // RUST_LOG must not change it.
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--warehouse")
            .arg(warehouse)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pitlake serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // Drains stderr for the life of the process (a full pipe would block it).
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on grpc://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                }
                lines.lock().expect("log").push(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => ServeProcess {
                addr: addr.parse().expect("listen address"),
                child,
                log,
                reader: Some(reader),
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().expect("log").join("\n");
                panic!("pitlake serve did not start:\n{log}");
            }
        }
    }

    /// What the server printed on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// Waits up to `timeout` for a stderr line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A Flight SQL client, authenticated as alice (the log on failure).
    /// A client signed in as `user`, or the server's refusal.
    pub async fn client_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<FlightSqlServiceClient<Channel>, String> {
        try_connect(self.addr, user, password).await
    }

    pub async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let connect = try_connect(self.addr, USER, PASSWORD);
        match tokio::time::timeout(Duration::from_secs(60), connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("cannot connect to pitlake serve: {e}\n{}", self.log()),
            Err(_) => panic!("no connection within 60 s:\n{}", self.log()),
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no shutdown code runs.
    pub fn kill(mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "pitlake serve had already exited ({status}):\n{}",
                self.log()
            );
        }
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("wait");
        assert!(status.code().is_none(), "not killed by a signal: {status}");
    }

    /// SIGTERM, then waits for a graceful exit (every acknowledged record
    /// committed first); returns the exit status and the log.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let term = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(term.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The process is gone, so its stderr ends: the reader has
                // taken the last lines once it returns.
                if let Some(reader) = self.reader.take() {
                    reader.join().expect("stderr reader");
                }
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "pitlake serve did not stop within 30 s after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Flight SQL client of `addr`, signed in as `user`.
pub async fn try_connect(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<FlightSqlServiceClient<Channel>, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = FlightSqlServiceClient::new(channel);
    client
        .handshake(user, password)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(client)
}

/// The `lookup` action: one row per key, in request order.
pub async fn lookup(
    client: &mut FlightSqlServiceClient<Channel>,
    group: &str,
    keys: &[i64],
    columns: &[&str],
) -> RecordBatch {
    let body = serde_json::json!({ "group": group, "keys": keys, "columns": columns });
    let mut results = client
        .do_action(Action {
            r#type: "lookup".into(),
            body: body.to_string().into(),
        })
        .await
        .unwrap_or_else(|e| panic!("lookup {body}: {e}"));
    let result = results
        .message()
        .await
        .expect("lookup result")
        .expect("one result");
    assert!(
        results.message().await.expect("end").is_none(),
        "one result"
    );
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(result.body.to_vec()), None)
            .expect("IPC stream");
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("IPC batches");
    arrow::compute::concat_batches(&schema, &batches).expect("concat")
}

const GROUP: &str = "s.g";
const BATCHES: usize = 200;
const ROWS: usize = 50;
/// Batches sent and not yet acknowledged, at most.
const WINDOW: usize = 4;

fn schema() -> SchemaRef {
    SchemaRef::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("v", DataType::Float64, true),
    ]))
}

/// 2024-01-01T00:00:00 in microseconds.
const T0: i64 = 1_704_067_200_000_000;

/// The streamed value of `id` (its event time is T0 + id seconds).
fn value(id: i64) -> f64 {
    id as f64 + 0.25
}

fn batch(ids: Range<i64>) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                ids.clone().map(|id| T0 + id * 1_000_000),
            )),
            Arc::new(Float64Array::from_iter_values(ids.map(value))),
        ],
    )
    .expect("batch")
}

/// What one killed stream got through.
#[derive(Debug)]
struct Outcome {
    /// Ids of the acknowledged batches (always a prefix of the stream).
    acked: Range<i64>,
    /// Ids of every batch sent (acknowledged or not).
    sent: Range<i64>,
}

/// Streams `BATCHES` batches of `ROWS` consecutive ids from `first_id` into
/// [`GROUP`], at most [`WINDOW`] unacknowledged at a time, and SIGKILLs
/// `server` as soon as `kill_after` acknowledgements arrived. Acks that were
/// already on their way are still counted: each one was sent only once its
/// batch was durable. `pace` is a pause before each send.
async fn stream_and_kill(
    server: ServeProcess,
    first_id: i64,
    kill_after: usize,
    pace: Duration,
) -> Outcome {
    assert!(
        kill_after + WINDOW < BATCHES,
        "the kill must come before the end"
    );
    let mut client = server.client().await;
    let ids = |i: usize| {
        let start = first_id + (i * ROWS) as i64;
        start..start + ROWS as i64
    };
    let (mut tx, rx) = futures::channel::mpsc::channel::<RecordBatch>(WINDOW);
    let descriptor = FlightDescriptor::new_path(vec!["stream".into(), GROUP.into()]);
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(rx.map(Ok))
        .map(|d| d.expect("encode"));
    // The server reads the descriptor off the first message before it answers.
    tx.send(batch(ids(0))).await.expect("send");
    let mut sent = 1;
    let mut acks = client.do_put(data).await.expect("do_put");
    let mut tx = Some(tx);
    let mut server = Some(server);
    let mut acked = 0usize;
    let mut last_lsn = 0u64;
    let mut log = String::new();
    loop {
        if let Some(sender) = tx.as_mut() {
            while sent < BATCHES && sent - acked < WINDOW {
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
                if sender.send(batch(ids(sent))).await.is_err() {
                    // The call ended (its status comes with the acks).
                    tx = None;
                    break;
                }
                sent += 1;
            }
        }
        let next = tokio::time::timeout(Duration::from_secs(20), acks.message())
            .await
            .unwrap_or_else(|_| panic!("no ack within 20 s after {acked} acks"));
        match next {
            Ok(Some(put)) => {
                let ack: serde_json::Value =
                    serde_json::from_slice(&put.app_metadata).expect("ack JSON");
                assert_eq!(ack["rows"].as_u64(), Some(ROWS as u64), "{ack}");
                let lsn = ack["lsn"].as_u64().expect("lsn");
                assert!(lsn >= last_lsn && lsn > 0, "lsn {lsn} after {last_lsn}");
                last_lsn = lsn;
                acked += 1;
                if acked == kill_after
                    && let Some(server) = server.take()
                {
                    log = server.log();
                    server.kill();
                    tx = None;
                }
            }
            Ok(None) | Err(_) if server.is_none() => break,
            Ok(None) => panic!("the stream ended after {acked} acks, before the kill:\n{log}"),
            Err(e) => panic!(
                "the stream failed after {acked} acks, before the kill: {e}\n{}",
                server.as_ref().map(ServeProcess::log).unwrap_or_default()
            ),
        }
    }
    assert!(acked >= kill_after);
    assert!(
        acked < BATCHES,
        "every batch was acknowledged before the kill"
    );
    println!(
        "killed after {kill_after} acks: {acked} of {sent} sent batches acknowledged (last lsn {last_lsn})"
    );
    Outcome {
        acked: first_id..first_id + (acked * ROWS) as i64,
        sent: first_id..first_id + (sent * ROWS) as i64,
    }
}

/// Waits until the stream of [`GROUP`] has committed every logged record.
async fn wait_committed(client: &mut FlightSqlServiceClient<Channel>, server: &ServeProcess) {
    let sql = format!(
        "SELECT lag_rows, committed_lsn, last_lsn, last_error FROM system.ingest_status WHERE table_name = '{GROUP}'"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = cells(&query(client, &sql).await).expect("cells");
        if let [row] = last.as_slice()
            && row[0] == "0"
            && row[1] == row[2]
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the recovered records were not committed within 20 s: {last:?}\n{}",
        server.log()
    );
}

fn contains(ranges: &[Range<i64>], id: i64) -> bool {
    ranges.iter().any(|r| r.contains(&id))
}

/// Every acknowledged id once, nothing twice, nothing never sent — through
/// pitlake and through pyiceberg, which must see the same rows; the streamed
/// commits cover consecutive, disjoint log ranges. Returns the ids present
/// and the number of streamed commits.
async fn check_exactly_once(
    client: &mut FlightSqlServiceClient<Channel>,
    warehouse: &Path,
    acked: &[Range<i64>],
    sent: &[Range<i64>],
) -> (Vec<i64>, usize) {
    let counts = cells(
        &query(
            client,
            &format!("SELECT count(*), count(DISTINCT id) FROM {GROUP}"),
        )
        .await,
    )
    .expect("cells");
    assert_eq!(counts[0][0], counts[0][1], "duplicated ids: {counts:?}");
    let mut ids = Vec::new();
    for b in query(client, &format!("SELECT id FROM {GROUP} ORDER BY id")).await {
        ids.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
    }
    assert_eq!(counts[0][0], ids.len().to_string());
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1], "id {} twice", pair[0]);
    }
    for id in acked.iter().flat_map(Range::clone) {
        assert!(ids.binary_search(&id).is_ok(), "acknowledged id {id} lost");
    }
    for &id in &ids {
        assert!(contains(sent, id), "id {id} was never sent");
    }

    let warehouse = warehouse.display().to_string();
    let out =
        tokio::task::spawn_blocking(move || run_script("count_ids.py", &[&warehouse, GROUP, "id"]))
            .await
            .expect("pyiceberg");
    let seen: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    let py_ids: Vec<i64> = seen["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect();
    assert_eq!(seen["count"], seen["distinct"], "pyiceberg sees duplicates");
    assert_eq!(py_ids.len(), ids.len(), "pyiceberg and pitlake disagree");
    assert!(py_ids == ids, "pyiceberg and pitlake see different ids");
    let commits: Vec<(u64, u64)> = seen["stream_commits"]
        .as_array()
        .expect("stream_commits")
        .iter()
        .map(|r| (r[0].as_u64().expect("first"), r[1].as_u64().expect("last")))
        .collect();
    assert!(!commits.is_empty(), "no streamed commit");
    for (i, &(first, last)) in commits.iter().enumerate() {
        assert!(first <= last, "commit {i}: {first} > {last}");
        if i > 0 {
            assert_eq!(first, commits[i - 1].1 + 1, "log ranges {commits:?}");
        }
    }
    let unacked = ids.iter().filter(|&&id| !contains(acked, id)).count();
    println!(
        "{} rows, {} acknowledged, {unacked} sent but unacknowledged kept; {} streamed commits",
        ids.len(),
        acked.iter().map(|r| r.end - r.start).sum::<i64>(),
        commits.len()
    );
    (ids, commits.len())
}

/// `(id, v)` of the lookup of `keys`.
async fn online_values(
    client: &mut FlightSqlServiceClient<Channel>,
    keys: &[i64],
) -> Vec<(i64, Option<f64>)> {
    let batch = lookup(client, GROUP, keys, &["v"]).await;
    assert_eq!(batch.num_rows(), keys.len());
    let k = batch.column(0).as_primitive::<Int64Type>();
    let v = batch.column(1).as_primitive::<Float64Type>();
    (0..batch.num_rows())
        .map(|i| (k.value(i), v.is_valid(i).then(|| v.value(i))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill_exactly_once() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path();

    // Round 1, default commit interval (2 s): killed after 10% of the acks,
    // before any commit; the restart replays the whole log.
    let a = ServeProcess::start(warehouse, &[]);
    let mut client = a.client().await;
    update(&mut client, "CREATE SCHEMA s").await;
    update(
        &mut client,
        "CREATE FEATURE GROUP s.g (id BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (id) EVENT TIME t ONLINE",
    )
    .await;
    let first = stream_and_kill(a, 0, BATCHES / 10, Duration::ZERO).await;

    // From here on a commit every 1000 rows (20 batches) or 50 ms, and the
    // stream paced at ~1 batch per ms: the second kill lands among commits.
    let frequent = ["--commit-interval-ms", "50", "--commit-rows", "1000"];
    let b = ServeProcess::start(warehouse, &frequent);
    let mut client = b.client().await;
    wait_committed(&mut client, &b).await;
    // "recovered the stream logs of s.g" (the wording may change; the name not).
    assert!(
        b.wait_for_log("recovered the stream log", Duration::from_secs(5))
            && b.log()
                .lines()
                .any(|l| l.contains("recovered") && l.contains(GROUP)),
        "{}",
        b.log()
    );
    check_exactly_once(
        &mut client,
        warehouse,
        std::slice::from_ref(&first.acked),
        std::slice::from_ref(&first.sent),
    )
    .await;

    // Round 2, on the recovered server: killed after 60% of the acks.
    let second_first_id = 1_000_000;
    let second = stream_and_kill(
        b,
        second_first_id,
        BATCHES * 6 / 10,
        Duration::from_millis(1),
    )
    .await;
    let c = ServeProcess::start(warehouse, &frequent);
    let mut client = c.client().await;
    wait_committed(&mut client, &c).await;
    let acked = [first.acked.clone(), second.acked.clone()];
    let sent = [first.sent.clone(), second.sent.clone()];
    let (ids, commits) = check_exactly_once(&mut client, warehouse, &acked, &sent).await;
    // Round 1 recovered in one commit; round 2 committed while streaming too.
    assert!(
        commits >= 3,
        "{commits} streamed commits: none before the second kill"
    );

    // Online: the recovered records are served; a key never sent is NULL.
    let probes = [
        first.acked.start,
        first.acked.end - 1,
        second.acked.start,
        (second.acked.start + second.acked.end) / 2,
        second.acked.end - 1,
    ];
    let never = 999_999;
    let mut keys = probes.to_vec();
    keys.push(never);
    let want: Vec<(i64, Option<f64>)> = probes
        .iter()
        .map(|&id| (id, Some(value(id))))
        .chain([(never, None)])
        .collect();
    assert_eq!(online_values(&mut client, &keys).await, want);

    // Newer values for some of them: the lookup returns the latest at once.
    let updated = [first.acked.start, second.acked.start];
    let newer = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(updated.to_vec())),
            Arc::new(TimestampMicrosecondArray::from(vec![
                T0 + 10_000_000_000_000;
                updated.len()
            ])),
            Arc::new(Float64Array::from(vec![-1.0, -2.0])),
        ],
    )
    .expect("batch");
    let descriptor = FlightDescriptor::new_path(vec!["stream".into(), GROUP.into()]);
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter([Ok(newer)]))
        .map(|d| d.expect("encode"));
    let acks: Vec<_> = client
        .do_put(data)
        .await
        .expect("do_put")
        .try_collect()
        .await
        .expect("acks");
    assert_eq!(acks.len(), 1);
    let latest: HashMap<i64, f64> = HashMap::from([(updated[0], -1.0), (updated[1], -2.0)]);
    let want: Vec<(i64, Option<f64>)> = probes
        .iter()
        .map(|&id| (id, Some(latest.get(&id).copied().unwrap_or(value(id)))))
        .chain([(never, None)])
        .collect();
    assert_eq!(online_values(&mut client, &keys).await, want);

    // A graceful stop commits the update before the process exits.
    let (status, log) = c.stop();
    assert!(status.success(), "{status}\n{log}");
    let out = tokio::task::spawn_blocking({
        let warehouse = warehouse.display().to_string();
        move || run_script("count_ids.py", &[&warehouse, GROUP, "id"])
    })
    .await
    .expect("pyiceberg");
    let seen: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(seen["count"].as_u64(), Some(ids.len() as u64 + 2), "{log}");
    println!("kill-and-count took {:?}", started.elapsed());
}

/// Clients that send a burst of records and go away without reading an
/// acknowledgement: every record that became durable is acknowledged anyway,
/// so the committer finds no gap and commits everything logged, the records
/// of a later client included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_clients_that_went_away_do_not_stall_the_committer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(dir.path(), &["--commit-interval-ms", "100"]);
    let mut client = server.client().await;
    update(&mut client, "CREATE SCHEMA s").await;
    update(
        &mut client,
        "CREATE FEATURE GROUP s.g (id BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (id) EVENT TIME t ONLINE",
    )
    .await;
    // At least 8 clients go away, and more until the server has logged a
    // record of one of them (whether it does before the call is dropped
    // depends on timing).
    let logged_lsn =
        format!("SELECT last_lsn FROM system.ingest_status WHERE table_name = '{GROUP}'");
    for round in 0i64.. {
        if round >= 8 {
            let lsn = cells(&query(&mut client, &logged_lsn).await).expect("cells");
            if lsn.first().is_some_and(|row| row[0] != "0") {
                break;
            }
            assert!(
                round < 200,
                "no record of 200 clients that went away was logged: {lsn:?}"
            );
        }
        let mut gone = server.client().await;
        let batches: Vec<RecordBatch> = (0..40i64)
            .map(|i| {
                let first = (round * 40 + i) * ROWS as i64;
                batch(first..first + ROWS as i64)
            })
            .collect();
        let descriptor = FlightDescriptor::new_path(vec!["stream".into(), GROUP.into()]);
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(futures::stream::iter(batches.into_iter().map(Ok)))
            .map(|d| d.expect("encode"));
        // The call is dropped as soon as it is answered: no ack is read.
        drop(gone.do_put(data).await);
        drop(gone);
    }
    update(
        &mut client,
        "INSERT INTO s.g VALUES (-1, TIMESTAMP '2024-01-01 00:00:00', 1.0)",
    )
    .await;
    wait_committed(&mut client, &server).await;
    let logged = cells(&query(&mut client, "SELECT count(*) FROM s.g").await).expect("cells");
    println!("rows logged and committed: {}", logged[0][0]);
    assert!(
        logged[0][0] != "1",
        "no record of the clients that went away was logged"
    );
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}
