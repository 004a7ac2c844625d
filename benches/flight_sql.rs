//! Flight SQL over loopback: latency of a one-row query and throughput of a
//! 10M-row result, client and server in one process, one command:
//!
//! `cargo bench --bench flight_sql`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use pitlake::Store;
use pitlake::flight::{ServerConfig, Users};

/// pitlake's binaries run on mimalloc (see Cargo.toml), without transparent
/// huge pages (see `pitlake::allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn one_query(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
) -> (usize, usize) {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .expect("execute");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<RecordBatch> = client
        .do_get(ticket)
        .await
        .expect("do_get")
        .try_collect()
        .await
        .expect("batches");
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let bytes = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    (rows, bytes)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    pitlake::allocator::disable_transparent_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let warehouse = Store::open(dir.path()).await.expect("warehouse");
        let (listener, addr) = pitlake::flight::bind("127.0.0.1:0").await.expect("bind");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let users = Users::Passwords(HashMap::from([("bench".to_string(), "bench".to_string())]));
        let server = tokio::spawn(pitlake::flight::serve(
            warehouse,
            listener,
            ServerConfig {
                users,
                ..ServerConfig::default()
            },
            async {
                let _ = rx.await;
            },
        ));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut client = FlightSqlServiceClient::new(channel);
        client.handshake("bench", "bench").await.expect("handshake");

        for _ in 0..50 {
            one_query(&mut client, "SELECT 1").await;
        }
        let mut latencies = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let start = Instant::now();
            let (rows, _) = one_query(&mut client, "SELECT 1").await;
            latencies.push(start.elapsed());
            assert_eq!(rows, 1);
        }
        latencies.sort();
        println!(
            "1-row query (GetFlightInfo + DoGet), 2000 runs: p50 {:?}, p99 {:?}, max {:?}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1]
        );

        let sql = "SELECT value, value * 2 AS doubled FROM generate_series(1, 10000000)";
        let start = Instant::now();
        let (rows, bytes) = one_query(&mut client, sql).await;
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(rows, 10_000_000);
        println!(
            "10M-row result (2 BIGINT columns): {secs:.2}s, {:.1} M rows/s, {:.0} MB/s",
            rows as f64 / secs / 1e6,
            bytes as f64 / secs / 1e6
        );

        let _ = tx.send(());
        server.await.expect("server task").expect("server");
    });
}
