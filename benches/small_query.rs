//! The small-query path: per-statement overhead of Flight SQL against a real
//! `pitlake serve` process, with the Rust client and (when the bench venv
//! exists) the ADBC driver from Python, in the same run. One command:
//!
//! `cargo bench --bench small_query [-- --pitlake-bin PATH] [--runs N] [--no-python]`
//!
//! Setup: a warehouse in a temporary folder, filled by the `pitlake` binary
//! (`pitlake sql -c`) with one ONLINE feature group `s.g` of 10k entities
//! (`k BIGINT` key, `ts`, `f1 DOUBLE`, `f2 VARCHAR`), one INSERT, one data
//! file; then `pitlake serve --user bench:bench` on a free port of loopback.
//! `--pitlake-bin` runs another build of the binary (to compare commits run
//! for run); by default the release build next to this bench.
//!
//! Measured, each after a warm-up, keys drawn at random (p50 / p99):
//!
//! - empty round trip: DoAction `ping` (authorized like every call, no work);
//! - `SELECT 1`: GetFlightInfo + DoGet;
//! - one row of a table: `SELECT * FROM s.g WHERE k = <literal>` (the
//!   Iceberg table, a Parquet scan);
//! - one row of the online table: `SELECT * FROM online.s.g WHERE k = <literal>`;
//! - the prepared point lookup `SELECT * FROM online.s.g WHERE k = ?`, prepared
//!   once and executed with a new parameter each time (bind DoPut +
//!   GetFlightInfo + DoGet, as the client library does it);
//! - the Flight `lookup` action, one key, all columns.
//!
//! Then `benches/small_query.py` measures the same through ADBC (and the two
//! actions through pyarrow.flight) against the same server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::Action;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;

type Client = FlightSqlServiceClient<Channel>;

const ENTITIES: i64 = 10_000;

struct Args {
    pitlake: PathBuf,
    runs: usize,
    python: bool,
}

fn args() -> Args {
    let mut args = Args {
        pitlake: PathBuf::from(env!("CARGO_BIN_EXE_pitlake")),
        runs: 2000,
        python: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--pitlake-bin" => args.pitlake = it.next().expect("--pitlake-bin PATH").into(),
            "--runs" => args.runs = it.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--no-python" => args.python = false,
            // cargo bench passes --bench; criterion-style filters are ignored.
            _ => {}
        }
    }
    args
}

/// A small deterministic generator (no extra crates).
struct Lcg(u64);

impl Lcg {
    fn key(&mut self) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % ENTITIES as u64) as i64
    }
}

fn pitlake_sql(bin: &Path, warehouse: &Path, sql: &str) {
    let out = Command::new(bin)
        .args(["sql", "--warehouse"])
        .arg(warehouse)
        .args(["-c", sql])
        .output()
        .expect("run pitlake sql");
    assert!(
        out.status.success(),
        "pitlake sql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pitlake serve` on a free port; its address, read from its first line.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(bin: &Path, warehouse: &Path) -> Server {
        let mut child = Command::new(bin)
            .args(["serve", "--warehouse"])
            .arg(warehouse)
            .args(["--listen", "127.0.0.1:0", "--user", "bench:bench"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pitlake serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("pitlake serve exited before listening")
                .expect("stderr line");
            if let Some(rest) = line.split("listening on grpc://").nth(1) {
                break rest.split_whitespace().next().expect("address").to_string();
            }
        };
        // Keep draining its log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn p(&self, q: f64) -> Duration {
        let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0[i]
    }
}

/// Times `runs` calls of `call` after `runs / 10` unrecorded ones.
async fn time<F, Fut>(runs: usize, mut call: F) -> Latencies
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..runs / 10 {
        call().await;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        call().await;
        times.push(start.elapsed());
    }
    times.sort();
    Latencies(times)
}

async fn query(client: &mut Client, sql: String) -> usize {
    let info = client.execute(sql, None).await.expect("execute");
    rows(client, info).await
}

async fn rows(client: &mut Client, info: arrow_flight::FlightInfo) -> usize {
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<RecordBatch> = client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("batches");
    batches.iter().map(RecordBatch::num_rows).sum()
}

async fn action(client: &mut Client, kind: &str, body: String) -> usize {
    let mut results = client
        .do_action(Action {
            r#type: kind.to_string(),
            body: body.into(),
        })
        .await
        .expect("action");
    let mut bytes = 0;
    while let Some(result) = results.message().await.expect("action result") {
        bytes += result.body.len();
    }
    bytes
}

fn main() {
    pitlake::allocator::disable_transparent_huge_pages();
    let args = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = dir.path().join("warehouse");
    pitlake_sql(
        &args.pitlake,
        &warehouse,
        &format!(
            "CREATE SCHEMA s;
             CREATE FEATURE GROUP s.g (k BIGINT NOT NULL, ts TIMESTAMP NOT NULL, f1 DOUBLE, f2 VARCHAR)
               ENTITY KEY (k) EVENT TIME ts ONLINE;
             INSERT INTO s.g SELECT value, TIMESTAMP '2024-01-01 00:00:00', value * 0.5,
               'v' || CAST(value AS VARCHAR) FROM generate_series(0, {}) AS t(value);",
            ENTITIES - 1
        ),
    );
    let server = Server::start(&args.pitlake, &warehouse);
    println!(
        "pitlake serve ({}) on {}, {} runs per line",
        args.pitlake.display(),
        server.addr,
        args.runs
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runs = args.runs;
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .expect("endpoint")
            .tcp_nodelay(true)
            // arrow-flight's `PreparedStatement` drops a binding's DoPut
            // response once it has read the one message, often before the
            // trailers arrive. h2 remembers at most 50 such streams a second (its default);
            // trailers for a forgotten one count against a limit of 1,024 after
            // which the client closes its own connection. See README "Flight SQL".
            .http2_max_concurrent_reset_streams(100_000)
            .connect()
            .await
            .expect("connect");
        let mut client = FlightSqlServiceClient::new(channel);
        client.handshake("bench", "bench").await.expect("handshake");
        let mut keys = Lcg(42);
        let mut table = Vec::new();

        let ping = {
            let c = &mut client;
            time(runs, || {
                let mut c = c.clone();
                async move {
                    action(&mut c, "ping", String::new()).await;
                }
            })
            .await
        };
        table.push(("empty round trip (DoAction ping)", ping));

        let client_ref = &client;
        let l = time(runs, || {
            let mut c = client_ref.clone();
            async move { assert_eq!(query(&mut c, "SELECT 1".into()).await, 1) }
        })
        .await;
        table.push(("SELECT 1", l));

        let mut k = Lcg(7);
        let l = time(runs / 4, || {
            let mut c = client_ref.clone();
            let sql = format!("SELECT * FROM s.g WHERE k = {}", k.key());
            async move { assert_eq!(query(&mut c, sql).await, 1) }
        })
        .await;
        table.push(("SELECT * FROM s.g WHERE k = <literal> (Iceberg)", l));

        let l = time(runs, || {
            let mut c = client_ref.clone();
            let sql = format!("SELECT * FROM online.s.g WHERE k = {}", keys.key());
            async move { assert_eq!(query(&mut c, sql).await, 1) }
        })
        .await;
        table.push(("SELECT * FROM online.s.g WHERE k = <literal>", l));

        let mut prepared = client
            .clone()
            .prepare("SELECT * FROM online.s.g WHERE k = ?".into(), None)
            .await
            .expect("prepare");
        let params = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)]));
        let prepared_ref = &mut prepared;
        let mut keys2 = Lcg(9);
        let mut times = Vec::with_capacity(runs);
        for i in 0..runs + runs / 10 {
            let batch = RecordBatch::try_new(
                params.clone(),
                vec![Arc::new(Int64Array::from(vec![keys2.key()]))],
            )
            .expect("parameters");
            let start = Instant::now();
            prepared_ref.set_parameters(batch).expect("bind");
            let info = prepared_ref.execute().await.expect("execute prepared");
            assert_eq!(rows(&mut client.clone(), info).await, 1);
            if i >= runs / 10 {
                times.push(start.elapsed());
            }
        }
        times.sort();
        table.push((
            "prepared SELECT * FROM online.s.g WHERE k = ? (bind + execute)",
            Latencies(times),
        ));

        let l = time(runs, || {
            let mut c = client_ref.clone();
            let body = serde_json::json!({"group": "s.g", "keys": [keys.key()]}).to_string();
            async move { assert!(action(&mut c, "lookup", body).await > 0) }
        })
        .await;
        table.push(("Flight lookup action, 1 key", l));

        let empty = table[0].1.p(0.5).as_secs_f64();
        let empty99 = table[0].1.p(0.99).as_secs_f64();
        println!("\nRust client (arrow-flight FlightSqlServiceClient):\n");
        println!("| what | p50 | p99 | p50 / empty p50 | p99 / empty p99 |");
        println!("|---|---|---|---|---|");
        for (what, l) in &table {
            println!(
                "| {what} | {} | {} | {:.2} | {:.2} |",
                fmt(l.p(0.5)),
                fmt(l.p(0.99)),
                l.p(0.5).as_secs_f64() / empty,
                l.p(0.99).as_secs_f64() / empty99
            );
        }
    });
    if args.python {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/small_query.py");
        let status = Command::new("python3")
            .arg(script)
            .args(["--uri", &format!("grpc://{}", server.addr)])
            .args(["--runs", &runs.to_string()])
            .status()
            .expect("run benches/small_query.py");
        assert!(status.success(), "benches/small_query.py failed");
    }
    drop(server);
}

fn fmt(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}
