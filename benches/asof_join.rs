//! The ASOF JOIN operator in isolation: pre-built in-memory batches, time per
//! join, throughput in input rows. The result is checked once before timing.
//!
//! `cargo bench --bench asof_join`

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionConfig;
use pitlake::session::{new_context, sql_dataframe};

/// pitlake's binaries run on mimalloc (see Cargo.toml), without transparent
/// huge pages (see `pitlake::allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `n` rows over `keys` keys; `time_ordered` sorts by time as appends land.
fn table(n: usize, keys: i64, seed: u64, time_ordered: bool, with_feature: bool) -> MemTable {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut rows: Vec<(i64, i64)> = (0..n)
        .map(|_| ((next() as i64) % keys, (next() as i64) % 1_000_000_000))
        .collect();
    if time_ordered {
        rows.sort_by_key(|r| r.1);
    }
    let mut fields = vec![
        Field::new("k", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
    ];
    if with_feature {
        fields.push(Field::new("f1", DataType::Float64, false));
    }
    let schema = Arc::new(Schema::new(fields));
    let batches = rows
        .chunks(8192)
        .map(|chunk| {
            let mut columns: Vec<Arc<dyn arrow::array::Array>> = vec![
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.0))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    chunk.iter().map(|r| r.1),
                )),
            ];
            if with_feature {
                columns.push(Arc::new(Float64Array::from_iter_values(
                    chunk.iter().map(|r| r.1 as f64),
                )));
            }
            RecordBatch::try_new(schema.clone(), columns).expect("batch")
        })
        .collect();
    MemTable::try_new(schema, vec![batches]).expect("table")
}

fn bench(c: &mut Criterion) {
    pitlake::allocator::disable_transparent_huge_pages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("asof_join");
    group.sample_size(10);
    for (name, labels, features, keys, ordered) in [
        (
            "100k x 1M, 10k keys, time-ordered",
            100_000,
            1_000_000,
            10_000,
            true,
        ),
        (
            "100k x 1M, 10k keys, unordered",
            100_000,
            1_000_000,
            10_000,
            false,
        ),
        ("64 x 1M, 10k keys", 64, 1_000_000, 10_000, true),
    ] {
        let ctx = new_context(SessionConfig::new().with_target_partitions(2));
        ctx.register_table("labels", Arc::new(table(labels, keys, 1, false, false)))
            .expect("labels");
        ctx.register_table(
            "features",
            Arc::new(table(features, keys, 2, ordered, true)),
        )
        .expect("features");
        let sql = "SELECT count(*), count(f.f1) FROM labels l ASOF JOIN features f MATCH_CONDITION (l.ts >= f.ts) ON l.k = f.k";
        let run = || async {
            let frame = sql_dataframe(&ctx, sql).await.expect("plan");
            frame.collect().await.expect("run")
        };
        let check = runtime.block_on(run());
        let rows = check[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("count")
            .value(0);
        assert_eq!(rows, labels as i64, "every label once");
        group.throughput(Throughput::Elements((labels + features) as u64));
        group.bench_function(name, |b| b.iter(|| runtime.block_on(run())));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
