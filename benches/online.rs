//! The online store and streaming ingest over loopback, one command:
//!
//! `cargo bench --bench online`
//!
//! Client (arrow-flight's Rust client) and server in one process, like
//! `benches/flight_sql.rs`, with authentication and the default commit policy
//! (streamed records committed to Iceberg within 2 s). One ONLINE feature
//! group of 1M entities × 32 DOUBLE features, loaded with
//! `INSERT ... SELECT ... FROM generate_series`, then:
//!
//! - empty round trip: DoAction "ping";
//! - lookup latency of 1, 10 and 100 random keys per DoAction "lookup" (every
//!   column, the Arrow IPC result decoded by the client);
//! - ingest throughput: one DoPut stream of 1k-row batches, pipelined (up to
//!   64 batches unacknowledged), and the latency of each batch's ack;
//! - online-visible latency: a 1-row record sent until a lookup returns it;
//! - offline-visible latency: a 1k-row batch sent until `SELECT count(*)`
//!   over Flight SQL includes it, and until an Iceberg commit holds it (what
//!   other engines see).
//!
//! Prints a table with the goals. Phases can be picked by name, e.g.
//! `cargo bench --bench online -- ingest` (of `lookup`, `visible`, `ingest`,
//! `offline`; all by default); the setup always runs.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, TimeUnit};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{Action, FlightDescriptor, PutResult};
use futures::{SinkExt, StreamExt, TryStreamExt};
use pitlake::Store;
use pitlake::flight::{ServerConfig, Users};
use pitlake::output::cells;
use tonic::transport::Channel;

/// pitlake's binaries run on mimalloc (see Cargo.toml), without transparent
/// huge pages (see `pitlake::allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Client = FlightSqlServiceClient<Channel>;

const GROUP: &str = "bench.features";
const ENTITIES: i64 = 1_000_000;
const FEATURES: usize = 32;
const INGEST_BATCH_ROWS: usize = 1_000;
const INGEST_BATCHES: usize = 2_000;
const INGEST_WINDOW: usize = 64;
/// 2024-01-01T00:00:00 in microseconds.
const T0: i64 = 1_704_067_200_000_000;

/// A small deterministic generator (no extra crates).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Latencies(samples)
    }
    fn p(&self, p: f64) -> Duration {
        percentile(&self.0, p)
    }
    /// "p50 …, p99 …".
    fn p50_p99(&self) -> String {
        format!("p50 {}, p99 {}", fmt(self.p(0.5)), fmt(self.p(0.99)))
    }

    fn max(&self) -> Duration {
        self.0[self.0.len() - 1]
    }
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

async fn connect(addr: std::net::SocketAddr) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake("bench", "bench").await.expect("handshake");
    client
}

async fn update(client: &mut Client, sql: &str) -> i64 {
    client
        .execute_update(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn query(client: &mut Client, sql: &str) -> Vec<Vec<String>> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<RecordBatch> = client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("batches");
    cells(&batches).expect("cells")
}

async fn ping(client: &mut Client) {
    let mut results = client
        .do_action(Action {
            r#type: "ping".into(),
            body: Vec::new().into(),
        })
        .await
        .expect("ping");
    while results.message().await.expect("ping result").is_some() {}
}

/// The lookup action; the result decoded.
async fn lookup(client: &mut Client, body: String) -> RecordBatch {
    let mut results = client
        .do_action(Action {
            r#type: "lookup".into(),
            body: body.into(),
        })
        .await
        .expect("lookup");
    let result = results
        .message()
        .await
        .expect("lookup result")
        .expect("one result");
    while results.message().await.expect("end").is_some() {}
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(result.body), None)
        .expect("IPC");
    let mut batches = reader.collect::<Result<Vec<_>, _>>().expect("IPC batches");
    assert_eq!(batches.len(), 1, "one batch");
    batches.pop().expect("batch")
}

fn lookup_body(keys: &[i64], columns: Option<&[&str]>) -> String {
    match columns {
        Some(columns) => serde_json::json!({"group": GROUP, "keys": keys, "columns": columns}),
        None => serde_json::json!({"group": GROUP, "keys": keys}),
    }
    .to_string()
}

fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), false),
    ];
    fields.extend((0..FEATURES).map(|j| Field::new(format!("f{j}"), DataType::Float64, true)));
    Arc::new(Schema::new(fields))
}

/// Rows for `ids` at event time `t`; feature j of a row is f0 + j.
fn batch(ids: Vec<i64>, t: i64, f0: impl Fn(i64) -> f64) -> RecordBatch {
    let n = ids.len();
    let base: Vec<f64> = ids.iter().map(|&id| f0(id)).collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(TimestampMicrosecondArray::from(vec![t; n])),
    ];
    for j in 0..FEATURES {
        columns.push(Arc::new(Float64Array::from_iter_values(
            base.iter().map(|b| b + j as f64),
        )));
    }
    RecordBatch::try_new(schema(), columns).expect("batch")
}

/// An open DoPut stream into [`GROUP`].
struct Stream {
    tx: futures::channel::mpsc::Sender<RecordBatch>,
    acks: tonic::Streaming<PutResult>,
}

impl Stream {
    async fn open(client: &mut Client, first: RecordBatch, buffer: usize) -> Self {
        let (mut tx, rx) = futures::channel::mpsc::channel::<RecordBatch>(buffer);
        let descriptor = FlightDescriptor::new_path(vec!["stream".into(), GROUP.into()]);
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(rx.map(Ok))
            .map(|d| d.expect("encode"));
        // The server reads the descriptor off the first message before it answers.
        tx.send(first).await.expect("send");
        let acks = client.do_put(data).await.expect("do_put");
        Stream { tx, acks }
    }

    async fn ack(&mut self) -> u64 {
        let put = self
            .acks
            .message()
            .await
            .expect("ack")
            .expect("stream ended");
        let ack: serde_json::Value = serde_json::from_slice(&put.app_metadata).expect("ack JSON");
        ack["lsn"].as_u64().expect("lsn")
    }

    async fn close(self) {
        let Stream { tx, mut acks } = self;
        drop(tx);
        while acks.message().await.expect("ack").is_some() {}
    }
}

/// Waits until the stream of [`GROUP`] has committed everything it logged.
async fn wait_committed(client: &mut Client) -> Duration {
    let started = Instant::now();
    let sql = format!(
        "SELECT lag_rows, last_error FROM system.ingest_status WHERE table_name = '{GROUP}'"
    );
    loop {
        let rows = query(client, &sql).await;
        if rows.first().is_none_or(|r| r[0] == "0") {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not committed in 120 s: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Row {
    what: String,
    result: String,
    goal: String,
    met: Option<bool>,
}

/// A row of latencies without a goal: "p50 …, p99 …".
fn latency_row(what: &str, samples: Vec<Duration>) -> Row {
    row(what, Latencies::new(samples).p50_p99(), "", None)
}

fn row(what: impl Into<String>, result: impl Into<String>, goal: &str, met: Option<bool>) -> Row {
    Row {
        what: what.into(),
        result: result.into(),
        goal: goal.into(),
        met,
    }
}

fn main() {
    pitlake::allocator::disable_transparent_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// Whether the command line picks `phase` (no names: every phase).
fn wants(phase: &str) -> bool {
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    picked.is_empty() || picked.iter().any(|p| p == phase)
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = Store::open(dir.path()).await.expect("warehouse");
    let (listener, addr) = pitlake::flight::bind("127.0.0.1:0").await.expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let users = Users::Passwords(HashMap::from([("bench".to_string(), "bench".to_string())]));
    let session = pitlake::Session::with_store(warehouse.clone())
        .await
        .expect("session");
    let server = tokio::spawn(pitlake::flight::serve(
        warehouse,
        listener,
        ServerConfig {
            users,
            ..ServerConfig::default()
        },
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = connect(addr).await;
    let mut rows = Vec::new();

    // Setup: 1M entities × 32 features, one snapshot; the first lookup builds
    // the online group from it.
    update(&mut client, "CREATE SCHEMA bench").await;
    let features: Vec<String> = (0..FEATURES).map(|j| format!("f{j} DOUBLE")).collect();
    update(
        &mut client,
        &format!(
            "CREATE FEATURE GROUP {GROUP} (id BIGINT, t TIMESTAMP, {}) ENTITY KEY (id) EVENT TIME t ONLINE",
            features.join(", ")
        ),
    )
    .await;
    let values: Vec<String> = (0..FEATURES)
        .map(|j| format!("CAST(value AS DOUBLE) + {j} AS f{j}"))
        .collect();
    let started = Instant::now();
    let written = update(
        &mut client,
        &format!(
            "INSERT INTO {GROUP} SELECT value AS id, TIMESTAMP '2024-01-01 00:00:00' AS t, {} FROM generate_series(0, {})",
            values.join(", "),
            ENTITIES - 1
        ),
    )
    .await;
    assert_eq!(written, ENTITIES);
    let load = started.elapsed();
    let started = Instant::now();
    let first = lookup(&mut client, lookup_body(&[7], None)).await;
    let build = started.elapsed();
    assert_eq!(first.num_columns(), 2 + FEATURES);
    assert_eq!(first.column(2).as_primitive::<Float64Type>().value(0), 7.0);
    let memory = query(
        &mut client,
        "SELECT memory_bytes FROM system.online_status WHERE table_name = 'bench.features'",
    )
    .await;
    println!(
        "setup: INSERT of {ENTITIES} rows × {FEATURES} features {}, online group built by the first lookup {}, its memory {} MB",
        fmt(load),
        fmt(build),
        memory
            .first()
            .and_then(|r| r.first())
            .and_then(|b| b.parse::<u64>().ok())
            .map_or("?".to_string(), |b| (b >> 20).to_string())
    );

    let mut rng = Lcg(42);
    let mut lookups = connect(addr).await;
    if wants("lookup") {
        // Empty round trip.
        for _ in 0..1_000 {
            ping(&mut client).await;
        }
        let mut samples = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let start = Instant::now();
            ping(&mut client).await;
            samples.push(start.elapsed());
        }
        let pings = Latencies::new(samples);
        rows.push(row(
            "empty round trip (DoAction ping), 20k",
            format!(
                "p50 {}, p99 {}, p99.9 {}",
                fmt(pings.p(0.5)),
                fmt(pings.p(0.99)),
                fmt(pings.p(0.999))
            ),
            "",
            None,
        ));

        // Lookups of random keys, every column.
        let mut single = None;
        for (keys_per_request, requests) in [(1usize, 20_000usize), (10, 10_000), (100, 5_000)] {
            let bodies: Vec<(i64, String)> = (0..requests + 500)
                .map(|_| {
                    let keys: Vec<i64> = (0..keys_per_request)
                        .map(|_| rng.next(ENTITIES as u64) as i64)
                        .collect();
                    (keys[0], lookup_body(&keys, None))
                })
                .collect();
            let mut samples = Vec::with_capacity(requests);
            for (i, (key, body)) in bodies.into_iter().enumerate() {
                let start = Instant::now();
                let batch = lookup(&mut client, body).await;
                let took = start.elapsed();
                assert_eq!(batch.num_rows(), keys_per_request);
                let f0 = batch.column(2).as_primitive::<Float64Type>();
                assert_eq!(f0.value(0), key as f64, "value of key {key}");
                if i >= 500 {
                    samples.push(took);
                }
            }
            let l = Latencies::new(samples);
            let (goal, met) = if keys_per_request == 1 {
                let ratio = l.p(0.99).as_secs_f64() / pings.p(0.99).as_secs_f64();
                single = Some(ratio);
                (
                    "p99 ≤ 500 µs and ≤ 3× empty round trip",
                    Some(l.p(0.99) <= Duration::from_micros(500) && ratio <= 3.0),
                )
            } else {
                ("", None)
            };
            rows.push(row(
                format!(
                    "lookup {keys_per_request} key{} × {} columns, {}k",
                    if keys_per_request == 1 { "" } else { "s" },
                    2 + FEATURES,
                    requests / 1000
                ),
                format!(
                    "p50 {}, p99 {}, p99.9 {}",
                    fmt(l.p(0.5)),
                    fmt(l.p(0.99)),
                    fmt(l.p(0.999))
                ),
                goal,
                met,
            ));
        }
        // Where a 1-key lookup's time goes: the same work in-process, no gRPC.
        let mut raw = Vec::with_capacity(20_000);
        let mut action = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let key = rng.next(ENTITIES as u64) as i64;
            let keys: ArrayRef = Arc::new(Int64Array::from(vec![key]));
            let start = Instant::now();
            let b = session
                .online_lookup(GROUP, &[keys], None)
                .await
                .expect("lookup");
            raw.push(start.elapsed());
            assert_eq!(b.num_rows(), 1);
            let body = lookup_body(&[key], None);
            let start = Instant::now();
            let bytes = pitlake::flight::online::lookup(&session, body.as_bytes())
                .await
                .expect("lookup action");
            action.push(start.elapsed());
            assert!(!bytes.is_empty());
        }
        rows.push(latency_row(
            "  of which in-process OnlineGroup::lookup, 1 key",
            raw,
        ));
        rows.push(latency_row(
            "  of which in-process JSON → lookup → IPC bytes, 1 key",
            action,
        ));
        if let Some(ratio) = single {
            rows.push(row(
                "lookup 1 key p99 / empty round trip p99",
                format!("{ratio:.2}×"),
                "≤ 3×",
                Some(ratio <= 3.0),
            ));
        }
    }

    if wants("visible") {
        // Online-visible latency at rest: a 1-row record until a lookup returns it.
        let t1 = T0 + 400 * 86_400_000_000; // newer than anything loaded or streamed
        let marker = |i: usize| -1.0 - i as f64;
        let key = |i: usize| (i as i64 * 7_919) % ENTITIES;
        let mut stream = Stream::open(&mut client, batch(vec![key(0)], t1, |_| marker(0)), 4).await;
        stream.ack().await;
        let mut visible = Vec::new();
        let mut acked = Vec::new();
        for i in 1..=300 {
            let id = key(i);
            let body = lookup_body(&[id], Some(&["f0"]));
            let start = Instant::now();
            stream
                .tx
                .send(batch(vec![id], t1 + i as i64, |_| marker(i)))
                .await
                .expect("send");
            loop {
                let b = lookup(&mut lookups, body.clone()).await;
                if b.column(1).as_primitive::<Float64Type>().value(0) == marker(i) {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(10), "never visible");
            }
            visible.push(start.elapsed());
            stream.ack().await;
            acked.push(start.elapsed());
        }
        stream.close().await;
        let visible = Latencies::new(visible);
        rows.push(latency_row("ack of a 1-row record at rest, 300", acked));
        rows.push(row(
            "online visible (send → lookup returns it), 300",
            format!(
                "p50 {}, p99 {}, max {}",
                fmt(visible.p(0.5)),
                fmt(visible.p(0.99)),
                fmt(visible.max())
            ),
            "p99 ≤ 50 ms",
            Some(visible.p(0.99) <= Duration::from_millis(50)),
        ));
        wait_committed(&mut client).await;
    }

    let t2 = T0 + 86_400_000_000;
    if wants("ingest") {
        // Ingest throughput: 1k-row batches, pipelined, every entity updated twice.
        let batches: Vec<RecordBatch> = (0..INGEST_BATCHES)
            .map(|b| {
                let start = (b * INGEST_BATCH_ROWS) as i64 % ENTITIES;
                let ids = (start..start + INGEST_BATCH_ROWS as i64).collect();
                batch(ids, t2 + b as i64, |id| id as f64 * 10.0)
            })
            .collect();
        let started = Instant::now();
        let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(INGEST_BATCHES);
        let mut batches = batches.into_iter();
        sent_at.push_back(Instant::now());
        let mut stream = Stream::open(
            &mut client,
            batches.next().expect("first batch"),
            INGEST_WINDOW,
        )
        .await;
        let mut ack_latency = Vec::with_capacity(INGEST_BATCHES);
        let mut in_flight = 1;
        let mut next = batches.next();
        while !sent_at.is_empty() || next.is_some() {
            if in_flight < INGEST_WINDOW
                && let Some(b) = next.take()
            {
                sent_at.push_back(Instant::now());
                stream.tx.send(b).await.expect("send");
                in_flight += 1;
                next = batches.next();
                continue;
            }
            stream.ack().await;
            let sent = sent_at.pop_front().expect("an unacknowledged batch");
            ack_latency.push(sent.elapsed());
            in_flight -= 1;
        }
        let ingest = started.elapsed();
        stream.close().await;
        let ingested = INGEST_BATCHES * INGEST_BATCH_ROWS;
        let rate = ingested as f64 / ingest.as_secs_f64();
        rows.push(row(
            format!(
                "ingest {}M rows, 1k-row batches, ≤ {INGEST_WINDOW} in flight",
                ingested / 1_000_000
            ),
            format!("{:.2} M rows/s ({})", rate / 1e6, fmt(ingest)),
            "≥ 1M rows/s",
            Some(rate >= 1e6),
        ));
        rows.push(latency_row("ack latency while ingesting", ack_latency));
        let check = lookup(&mut lookups, lookup_body(&[ENTITIES - 1], Some(&["f0"]))).await;
        assert_eq!(
            check.column(1).as_primitive::<Float64Type>().value(0),
            (ENTITIES - 1) as f64 * 10.0
        );
        let drain = wait_committed(&mut client).await;
        rows.push(row(
            "Iceberg commits catch up after the ingest",
            fmt(drain),
            "",
            None,
        ));
    }

    if wants("offline") {
        // Offline-visible latency: a 1k-row batch of new entities until count(*)
        // over Flight SQL includes it, and until an Iceberg commit holds it.
        let count_sql = format!("SELECT count(*) FROM {GROUP}");
        let lsn_sql = "SELECT max(CAST(summary['pitlake.wal.last-lsn'] AS BIGINT)) FROM bench.\"features$snapshots\"";
        let mut in_sql = Vec::new();
        let mut in_iceberg = Vec::new();
        for i in 0..5i64 {
            let before: i64 = query(&mut client, &count_sql).await[0][0]
                .parse()
                .expect("count");
            let ids: Vec<i64> = (0..INGEST_BATCH_ROWS as i64)
                .map(|k| ENTITIES + i * 10_000 + k)
                .collect();
            let b = batch(ids, t2, |id| id as f64);
            let start = Instant::now();
            let mut stream = Stream::open(&mut client, b, 2).await;
            let lsn = stream.ack().await;
            stream.close().await;
            loop {
                let n: i64 = query(&mut client, &count_sql).await[0][0]
                    .parse()
                    .expect("count");
                if n >= before + INGEST_BATCH_ROWS as i64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            in_sql.push(start.elapsed());
            loop {
                let committed = query(&mut client, lsn_sql).await[0][0].clone();
                if committed.parse::<u64>().is_ok_and(|c| c >= lsn) {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(60), "never committed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            in_iceberg.push(start.elapsed());
        }
        let in_sql = Latencies::new(in_sql);
        let in_iceberg = Latencies::new(in_iceberg);
        rows.push(row(
            "offline visible: count(*) over Flight SQL includes it, 5",
            format!("p50 {}, max {}", fmt(in_sql.p(0.5)), fmt(in_sql.max())),
            "≤ 10 s",
            Some(in_sql.max() <= Duration::from_secs(10)),
        ));
        rows.push(row(
            "offline visible: in an Iceberg commit (other engines), 5",
            format!(
                "p50 {}, max {}",
                fmt(in_iceberg.p(0.5)),
                fmt(in_iceberg.max())
            ),
            "≤ 10 s",
            Some(in_iceberg.max() <= Duration::from_secs(10)),
        ));
    }

    let _ = stop.send(());
    server.await.expect("server task").expect("server");

    let width = rows
        .iter()
        .map(|r| r.what.chars().count())
        .max()
        .unwrap_or(0);
    let result_width = rows
        .iter()
        .map(|r| r.result.chars().count())
        .max()
        .unwrap_or(0);
    println!();
    println!(
        "| {:width$} | {:result_width$} | goal | met |",
        "what", "result"
    );
    println!(
        "|{}|{}|---|---|",
        "-".repeat(width + 2),
        "-".repeat(result_width + 2)
    );
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!(
            "| {:width$} | {:result_width$} | {} | {met} |",
            r.what, r.result, r.goal
        );
    }
}
