//! The Flight SQL endpoint, with real clients: arrow-flight's Rust client and
//! the Python ADBC Flight SQL driver. Servers bind port 0 and are shut down
//! explicitly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetTables, CommandStatementIngest, SqlInfo, TableDefinitionOptions,
};
use futures::TryStreamExt;
use pitlake::Store;
use pitlake::flight::{ServerConfig, Users};
use pitlake::output::cells;
use tonic::transport::Channel;

use crate::python::run_script;

pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<pitlake::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(users: Users) -> Self {
        Self::start_with(ServerConfig {
            users,
            ..ServerConfig::default()
        })
        .await
    }

    pub async fn start_with(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let warehouse = Store::open(dir.path()).await.expect("warehouse");
        let (listener, addr) = pitlake::flight::bind("127.0.0.1:0").await.expect("bind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(pitlake::flight::serve(warehouse, listener, config, async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server");
        }
    }

    async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        FlightSqlServiceClient::new(channel)
    }
}

/// A server for alice and a client signed in as her.
async fn served_to_alice() -> (TestServer, FlightSqlServiceClient<Channel>) {
    let server = TestServer::start(alice()).await;
    let mut client = server.client().await;
    client
        .handshake("alice", "s3cret")
        .await
        .expect("handshake");
    (server, client)
}

fn alice() -> Users {
    Users::Passwords(HashMap::from([("alice".to_string(), "s3cret".to_string())]))
}

/// Runs a statement over Flight SQL; panics with the statement on failure.
pub async fn update(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> i64 {
    client
        .execute_update(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    try_query(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A query's batches over Flight SQL, or the error's text.
pub async fn try_query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, String> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    let ticket = info.endpoint[0].ticket.clone().ok_or("no ticket")?;
    client
        .do_get(ticket)
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_round_trip() {
    let server = TestServer::start(alice()).await;
    let mut client = server.client().await;

    let err = client
        .execute("SELECT 1".into(), None)
        .await
        .expect_err("no token");
    assert!(err.to_string().contains("authenticate"), "{err}");
    assert!(client.handshake("alice", "wrong").await.is_err());
    client
        .handshake("alice", "s3cret")
        .await
        .expect("handshake");

    client
        .execute_update(
            "CREATE FEATURE GROUP fg (k VARCHAR, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t".into(),
            None,
        )
        .await
        .expect("create");
    let written = client
        .execute_update(
            "INSERT INTO fg VALUES ('a', '2024-01-01', 1.5), ('b', '2024-01-02', 2.5)".into(),
            None,
        )
        .await
        .expect("insert");
    assert_eq!(written, 2);

    let rows = query(&mut client, "SELECT k, v FROM fg ORDER BY k").await;
    assert_eq!(
        cells(&rows).expect("cells"),
        vec![vec!["a", "1.5"], vec!["b", "2.5"]]
    );

    // Bulk ingest, validated like INSERT.
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("t", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["c"])),
            Arc::new(StringArray::from(vec!["2024-01-03"])),
            Arc::new(Int64Array::from(vec![3])),
        ],
    )
    .expect("batch");
    let ingested = client
        .execute_ingest(
            CommandStatementIngest {
                table: "fg".into(),
                table_definition_options: Some(TableDefinitionOptions {
                    if_not_exist: 2, // fail
                    if_exists: 2,    // append
                }),
                ..Default::default()
            },
            futures::stream::iter([Ok(batch)]),
        )
        .await
        .expect("ingest");
    assert_eq!(ingested, 1);

    // Prepared statement with a parameter.
    let mut prepared = client
        .prepare("SELECT v FROM fg WHERE k = $1".into(), None)
        .await
        .expect("prepare");
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)])),
        vec![Arc::new(StringArray::from(vec!["c"]))],
    )
    .expect("params");
    prepared.set_parameters(params).expect("bind");
    let info = prepared.execute().await.expect("execute prepared");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let rows: Vec<RecordBatch> = client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("rows");
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["3.0"]]);
    prepared.close().await.expect("close");

    // Metadata.
    let info = client
        .get_tables(CommandGetTables {
            include_schema: true,
            ..Default::default()
        })
        .await
        .expect("tables");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let tables: Vec<RecordBatch> = client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("tables");
    assert_eq!(tables[0].num_columns(), 5);
    assert_eq!(tables[0].num_rows(), 1);
    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::SqlIdentifierQuoteChar,
        ])
        .await
        .expect("sql info");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let sql_info: Vec<RecordBatch> = client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("info");
    assert_eq!(sql_info[0].num_rows(), 2);

    // Errors carry the right code and pitlake's message.
    let err = client
        .execute("SELECT * FROM nothing".into(), None)
        .await
        .expect_err("missing table");
    assert!(err.to_string().contains("not found"), "{err}");
    let err = client
        .execute_update("INSERT INTO fg VALUES (NULL, '2024-01-01', 1)".into(), None)
        .await
        .expect_err("null key");
    assert!(
        err.to_string().contains("InvalidArgument") || err.to_string().contains("invalid argument"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("column k, row 1: NULL is not allowed"),
        "{err}"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_python_client() {
    let server = TestServer::start(alice()).await;
    let uri = format!("grpc://{}", server.addr);
    let out = tokio::task::spawn_blocking(move || {
        run_script("adbc_client.py", &[&uri, "alice", "s3cret"])
    })
    .await
    .expect("script");
    assert!(out.contains("OK"), "{out}");
    server.stop().await;
}

/// The data scientist's example in `examples/` runs against a served warehouse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_scientist_example() {
    let (server, mut client) = served_to_alice().await;
    for sql in [
        "CREATE SCHEMA airlines",
        "CREATE FEATURE GROUP airlines.airline_features (carrier VARCHAR, airport VARCHAR, event_time TIMESTAMP, arr_flights BIGINT, delay_rate DOUBLE) ENTITY KEY (carrier, airport) EVENT TIME event_time",
        "INSERT INTO airlines.airline_features VALUES ('AA', 'JFK', '2024-01-01', 1200, 0.21), ('AA', 'JFK', '2024-02-01', 1100, 0.25), ('DL', 'ATL', '2024-01-01', 3000, 0.12)",
        "CREATE TABLE airlines.labels (carrier VARCHAR, airport VARCHAR, ts TIMESTAMP, delayed BOOLEAN)",
        "INSERT INTO airlines.labels VALUES ('AA', 'JFK', '2024-02-10', true), ('DL', 'ATL', '2024-06-01', false), ('UA', 'SFO', '2024-01-05', true)",
    ] {
        client
            .execute_update(sql.into(), None)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let uri = format!("grpc://{}", server.addr);
    let example =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/training_set.py");
    let out = tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(crate::python::python())
            .arg(example)
            .args([&uri, "alice", "s3cret"])
            .output()
            .expect("run the example");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    })
    .await
    .expect("example");
    assert!(
        out.contains("feature group airlines.airline_features"),
        "{out}"
    );
    assert!(out.contains("training set: 3 rows"), "{out}");
    assert!(
        out.contains("labels without features (older than 60 days or unknown): 2"),
        "{out}"
    );
    server.stop().await;
}

/// Twenty clients at once, six of them running a long query: the short
/// queries all finish before any long one, so one heavy query never starves
/// the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_queries_are_not_starved_by_long_ones() {
    let server = TestServer::start(Users::Anyone).await;
    let long = "SELECT sum(a.value * b.value) FROM generate_series(1, 30000) a CROSS JOIN generate_series(1, 30000) b";
    let started = std::time::Instant::now();
    // Passed by every client once the long queries run (their DoGet has
    // answered): only then do the short ones start.
    let long_running = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = server.client().await;
        let is_long = i < 6;
        let sql = if is_long {
            long.to_string()
        } else {
            format!("SELECT {i}")
        };
        let long_running = long_running.clone();
        tasks.push(tokio::spawn(async move {
            let rows: Vec<RecordBatch> = if is_long {
                let info = client.execute(sql, None).await.expect("plan");
                let ticket = info.endpoint[0].ticket.clone().expect("ticket");
                let stream = client.do_get(ticket).await.expect("do_get");
                long_running.wait().await;
                stream.try_collect().await.expect("long query")
            } else {
                long_running.wait().await;
                query(&mut client, &sql).await
            };
            (
                is_long,
                rows.iter().map(RecordBatch::num_rows).sum::<usize>(),
                started.elapsed(),
            )
        }));
    }
    let mut short_done = Vec::new();
    let mut long_done = Vec::new();
    for task in tasks {
        let (is_long, rows, at) = task.await.expect("client");
        assert_eq!(rows, 1);
        if is_long {
            long_done.push(at)
        } else {
            short_done.push(at)
        }
    }
    let last_short = short_done.iter().max().expect("short");
    let first_long = long_done.iter().min().expect("long");
    assert!(
        last_short < first_long,
        "short queries finished by {last_short:?}, the first long one at {first_long:?}"
    );
    server.stop().await;
}

/// TLS with a self-signed certificate made for the test: a client that trusts
/// it gets in; a plaintext client does not.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    std::fs::write(&cert, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");

    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = Store::open(dir.path()).await.expect("warehouse");
    let (listener, addr) = pitlake::flight::bind("127.0.0.1:0").await.expect("bind");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig {
        users: alice(),
        tls: Some(pitlake::flight::TlsFiles {
            cert: cert.clone(),
            key,
        }),
        ..ServerConfig::default()
    };
    let server = tokio::spawn(pitlake::flight::serve(warehouse, listener, config, async {
        let _ = rx.await;
    }));

    let pem = std::fs::read(&cert).expect("cert");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("TLS connect");
    let mut client = FlightSqlServiceClient::new(channel);
    client
        .handshake("alice", "s3cret")
        .await
        .expect("handshake over TLS");
    let rows = query(&mut client, "SELECT 42").await;
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["42"]]);

    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut client = FlightSqlServiceClient::new(channel);
        assert!(
            client.handshake("alice", "s3cret").await.is_err(),
            "plaintext accepted"
        );
    }

    let _ = tx.send(());
    server.await.expect("server task").expect("server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_its_memory_limit_fails_alone() {
    let server = TestServer::start_with(ServerConfig {
        users: Users::Anyone,
        limits: pitlake::flight::Limits {
            query_memory_bytes: Some(4 << 20),
            ..Default::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await;
    query(
        &mut client,
        "CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t",
    )
    .await;
    query(
        &mut client,
        "INSERT INTO fg SELECT value % 1000, to_timestamp_seconds(1704067200 + value), value FROM generate_series(1, 1000000)",
    )
    .await;
    // A hash join's build side (1M rows, ~24 MB) does not fit 4 MB and
    // cannot spill (an ASOF JOIN would spill and succeed).
    let sql = "SELECT count(b.v) FROM fg a JOIN fg b ON a.k = b.k AND a.v = b.v";
    let err = match client.execute(sql.to_string(), None).await {
        Err(e) => e,
        Ok(info) => {
            let ticket = info.endpoint[0].ticket.clone().expect("ticket");
            match client.do_get(ticket).await {
                Err(e) => e,
                Ok(stream) => stream
                    .try_collect::<Vec<RecordBatch>>()
                    .await
                    .expect_err("over the memory limit"),
            }
        }
    };
    let text = err.to_string();
    assert!(
        text.contains("Resources exhausted")
            || text.contains("resources exhausted")
            || text.contains("ResourceExhausted"),
        "{text}"
    );
    // Small queries on the same server still run.
    let batches = query(&mut client, "SELECT count(*) FROM fg WHERE k = 7").await;
    assert_eq!(cells(&batches).expect("cells")[0][0], "1000");
    server.stop().await;
}

/// CancelFlightInfo on the FlightInfo of a query.
async fn cancel(
    client: &mut FlightSqlServiceClient<Channel>,
    info: &arrow_flight::FlightInfo,
) -> i32 {
    use prost::Message;
    let request = arrow_flight::CancelFlightInfoRequest::new(info.clone());
    let action = arrow_flight::Action::new("CancelFlightInfo", request.encode_to_vec());
    let results: Vec<arrow_flight::Result> = client
        .do_action(action)
        .await
        .expect("CancelFlightInfo")
        .try_collect()
        .await
        .expect("results");
    arrow_flight::CancelFlightInfoResult::decode(results[0].body.as_ref())
        .expect("CancelFlightInfoResult")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_flight_info_stops_a_running_query_and_one_not_started() {
    let server = TestServer::start(Users::Anyone).await;
    let mut client = server.client().await;
    // Long enough to still run when the cancel arrives (minutes in debug).
    let long = "SELECT sum(value % 7) FROM generate_series(1, 20000000000)";

    let info = client.execute(long.to_string(), None).await.expect("plan");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut reader = server.client().await;
    let started = std::time::Instant::now();
    let (running_tx, running) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(async move {
        match reader.do_get(ticket).await {
            Err(e) => e.to_string(),
            Ok(stream) => {
                // The server runs the query: its DoGet has answered.
                let _ = running_tx.send(());
                match stream.try_collect::<Vec<RecordBatch>>().await {
                    Err(e) => e.to_string(),
                    Ok(_) => "finished".to_string(),
                }
            }
        }
    });
    // Cancelled while it runs, not before DoGet (that case comes below).
    tokio::time::timeout(std::time::Duration::from_secs(60), running)
        .await
        .expect("DoGet answers within 60 s")
        .expect("the query runs");
    assert_eq!(
        cancel(&mut client, &info).await,
        arrow_flight::CancelStatus::Cancelled as i32
    );
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("the query stops soon after the cancel")
        .expect("task");
    assert!(outcome.contains("cancelled"), "{outcome}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // Cancelled before DoGet: the ticket no longer runs.
    let info = client.execute(long.to_string(), None).await.expect("plan");
    assert_eq!(
        cancel(&mut client, &info).await,
        arrow_flight::CancelStatus::Cancelled as i32
    );
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let err = match client.do_get(ticket).await {
        Err(e) => e.to_string(),
        Ok(stream) => stream
            .try_collect::<Vec<RecordBatch>>()
            .await
            .expect_err("cancelled")
            .to_string(),
    };
    assert!(err.contains("cancelled"), "{err}");

    // The server still answers.
    let batches = query(&mut client, "SELECT 1").await;
    assert_eq!(cells(&batches).expect("cells")[0][0], "1");
    server.stop().await;
}

/// A DoPut stream whose third batch (of 400) has a NULL entity key: the batches before
/// it may be acknowledged, then the stream ends with an error naming the
/// column, and what the table holds is exactly what was acknowledged (the
/// batches after it are never taken, even though records are prepared in
/// parallel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_put_stops_at_the_first_invalid_batch() {
    use arrow::array::{Float64Array, TimestampMicrosecondArray};
    use arrow::datatypes::TimeUnit;
    use arrow_flight::FlightDescriptor;
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use futures::StreamExt;

    let (server, mut client) = served_to_alice().await;
    update(
        &mut client,
        "CREATE FEATURE GROUP fg (id BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (id) EVENT TIME t",
    )
    .await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("v", DataType::Float64, true),
    ]));
    let batches: Vec<RecordBatch> = (0..400i64)
        .map(|b| {
            let ids: Vec<Option<i64>> = (0..100)
                .map(|i| (b != 2 || i != 50).then_some(b * 100 + i))
                .collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(TimestampMicrosecondArray::from(vec![
                        1_700_000_000_000_000;
                        100
                    ])),
                    Arc::new(Float64Array::from(vec![b as f64; 100])),
                ],
            )
            .expect("batch")
        })
        .collect();
    let descriptor = FlightDescriptor::new_path(vec!["stream".into(), "default.fg".into()]);
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map(|d| d.expect("encode"));
    let mut acks = client.do_put(data).await.expect("do_put");
    let mut acked = 0;
    let error = loop {
        match acks.message().await {
            Ok(Some(ack)) => {
                let ack: serde_json::Value =
                    serde_json::from_slice(&ack.app_metadata).expect("ack JSON");
                assert_eq!(ack["rows"].as_u64(), Some(100), "{ack}");
                acked += 1;
            }
            Ok(None) => panic!("the stream ended without an error after {acked} acks"),
            Err(status) => break status,
        }
    };
    assert!(acked <= 2, "{acked} acks: only batches before the bad one");
    assert!(error.message().contains("column id"), "{error}");
    let count = query(&mut client, "SELECT count(*) FROM fg").await;
    assert_eq!(
        cells(&count).expect("cells")[0][0],
        (acked * 100).to_string(),
        "the table holds what was acknowledged"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_sign_in_keep_their_own_schema_and_settings() {
    let server = TestServer::start(Users::Anyone).await;
    // Two connections, as two programs would open them.
    let mut a = server.client().await;
    let mut b = server.client().await;
    update(&mut a, "CREATE SCHEMA s2").await;
    update(&mut a, "CREATE TABLE t (x INT)").await;
    update(&mut a, "INSERT INTO t VALUES (1)").await;
    update(&mut a, "CREATE TABLE s2.t (x INT)").await;
    update(&mut a, "INSERT INTO s2.t VALUES (1), (2)").await;
    update(&mut a, "USE s2").await;
    update(&mut a, "SET datafusion.execution.batch_size = 1234").await;
    let count = |batches: Vec<RecordBatch>| cells(&batches).expect("cells")[0][0].clone();
    assert_eq!(count(query(&mut a, "SELECT count(*) FROM t").await), "2");
    assert_eq!(count(query(&mut b, "SELECT count(*) FROM t").await), "1");
    let setting = "SELECT value FROM information_schema.df_settings \
                   WHERE name = 'datafusion.execution.batch_size'";
    assert_eq!(count(query(&mut a, setting).await), "1234");
    assert_ne!(count(query(&mut b, setting).await), "1234");
    server.stop().await;
}

/// Rows of string views cut from large buffers travel with their own bytes:
/// one row of a view cast sent its batch's 18 MB in one message (past the
/// client's limit), and the batch went whole with each of the 14 messages it
/// was cut into.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_views_are_sent_with_their_own_bytes() {
    let server = TestServer::start(Users::Anyone).await;
    let mut client = server.client().await;
    update(
        &mut client,
        "CREATE TABLE longs AS SELECT value AS id, repeat(CAST(value AS VARCHAR), 200) AS s \
         FROM range(20000)",
    )
    .await;
    // Distinct values (a dictionary would hide the waste), 200 to 1000 bytes.
    let text_bytes: usize = (0..20_000).map(|i: usize| i.to_string().len() * 200).sum();
    // (the messages' body bytes, the largest body)
    async fn received(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> (usize, usize) {
        let info = client.execute(sql.to_string(), None).await.expect(sql);
        let ticket = info.endpoint[0].ticket.clone().expect("ticket");
        let messages: Vec<arrow_flight::FlightData> = client
            .inner_mut()
            .do_get(ticket)
            .await
            .expect("do_get")
            .into_inner()
            .try_collect()
            .await
            .expect(sql);
        let bodies = messages.iter().map(|m| m.data_body.len());
        (bodies.clone().sum(), bodies.max().unwrap_or(0))
    }
    let one = "SELECT arrow_cast(s, 'Utf8View') AS v FROM longs WHERE id < 5000 LIMIT 1";
    let (total, _) = received(&mut client, one).await;
    assert!(total < 16 * 1024, "one row sent {total} bytes");
    let all = "SELECT arrow_cast(s, 'Utf8View') AS v FROM longs";
    let (total, largest) = received(&mut client, all).await;
    assert!(total < text_bytes * 3 / 2, "{total} bytes for {text_bytes}");
    assert!(largest <= 3 << 20, "a message of {largest} bytes");
    // And they arrive whole, through the client's own decoder.
    let batches = query(&mut client, all).await;
    let rows = cells(&batches).expect("cells");
    assert_eq!(rows.len(), 20_000);
    assert_eq!(rows[12_345][0], "12345".repeat(200));
    server.stop().await;
}
