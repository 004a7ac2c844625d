//! pitlake's side of the ASOF peer comparison (`benches/asof_peers.py` drives it).
//!
//! `cargo bench --bench asof_peers -- <labels.parquet> <features.parquet> <joins> <threads>`
//! prints one JSON line: time, rows, matched rows and the sum of a feature, the
//! checksum all engines must agree on. With `--explain` it prints the physical
//! plan instead, and with `--analyze` the plan with its metrics after the run.

use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use datafusion::prelude::{ParquetReadOptions, SessionConfig};
use pitlake::session::{new_context, sql_dataframe};

/// pitlake's binaries run on mimalloc (see Cargo.toml), without transparent
/// huge pages (see `pitlake::allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    pitlake::allocator::disable_transparent_huge_pages();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.len() < 4 {
        eprintln!("usage: asof_peers <labels.parquet> <features.parquet> <joins> <threads>");
        std::process::exit(2);
    }
    let joins: usize = args[2].parse().expect("joins");
    let threads: usize = args[3].parse().expect("threads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ctx = new_context(SessionConfig::new().with_target_partitions(threads));
        ctx.register_parquet("labels", &args[0], ParquetReadOptions::default())
            .await
            .expect("labels");
        ctx.register_parquet("features", &args[1], ParquetReadOptions::default())
            .await
            .expect("features");
        let mut sql = String::from("SELECT count(*) AS n, count(f0.f1) AS matched, sum(f0.f1");
        for j in 1..joins {
            sql.push_str(&format!(" + f{j}.f1"));
        }
        sql.push_str(") AS total FROM labels l");
        for j in 0..joins {
            sql.push_str(&format!(
                " ASOF JOIN features f{j} MATCH_CONDITION (l.ts >= f{j}.ts) ON l.k = f{j}.k"
            ));
        }
        let explain = std::env::args().any(|a| a == "--explain");
        let analyze = std::env::args().any(|a| a == "--analyze");
        if explain || analyze {
            let frame = sql_dataframe(&ctx, &sql).await.expect("plan");
            let frame = frame.explain(false, analyze).expect("explain");
            for batch in frame.collect().await.expect("explain") {
                let plans = batch.column(1).as_string::<i32>();
                for plan in plans.iter().flatten() {
                    println!("{plan}");
                }
            }
            return;
        }
        let start = Instant::now();
        let frame = sql_dataframe(&ctx, &sql).await.expect("plan");
        let batches = frame.collect().await.expect("run");
        let secs = start.elapsed().as_secs_f64();
        let b = &batches[0];
        let n = b.column(0).as_primitive::<Int64Type>().value(0);
        let matched = b.column(1).as_primitive::<Int64Type>().value(0);
        let total = b.column(2).as_primitive::<Float64Type>();
        let total = if total.is_valid(0) { total.value(0) } else { 0.0 };
        println!(r#"{{"engine": "pitlake", "secs": {secs:.3}, "rows": {n}, "matched": {matched}, "sum": {total}}}"#);
    });
}
