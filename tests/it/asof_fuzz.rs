//! Differential fuzzing of the ASOF JOIN: random inputs through the operator
//! and through a naive reference; every left row must get the same right row.
//!
//! Inputs have duplicate and skewed keys, ties on the match value, NULL keys and
//! NULL match values, empty sides, all four operators, with and without a
//! maximum age, odd batch sizes and several partitions.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{col, lit};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::prelude::SessionConfig;
use pitlake::options::PitlakeOptions;
use pitlake::planning::MatchOp;
use pitlake::planning::asof_join::{AsOfJoinSpec, asof_join};
use pitlake::session::new_context;

/// splitmix64: deterministic, dependency-free randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy)]
struct Row {
    id: i64,
    key: Option<i64>,
    t: Option<i64>,
}

fn rows(rng: &mut Rng, n: usize, keys: u64, span: u64, id_base: i64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            // Skew: squaring a uniform pick favours small keys.
            let u = rng.below(1000) as f64 / 1000.0;
            let key = ((u * u) * keys as f64) as i64;
            Row {
                id: id_base + i as i64,
                key: (!rng.chance(8)).then_some(key),
                t: (!rng.chance(5)).then(|| rng.below(span) as i64),
            }
        })
        .collect()
}

/// The specification, written the slow and obvious way.
fn reference(
    left: &[Row],
    right: &[Row],
    op: MatchOp,
    max_age: Option<(i64, bool)>,
) -> HashMap<i64, Option<i64>> {
    // Right rows by key, so a large case stays quick in a debug build.
    let mut by_key: HashMap<i64, Vec<&Row>> = HashMap::new();
    for r in right {
        if let Some(k) = r.key {
            by_key.entry(k).or_default().push(r);
        }
    }
    left.iter()
        .map(|l| {
            let (Some(k), Some(t)) = (l.key, l.t) else {
                return (l.id, None);
            };
            let group = by_key.get(&k).map_or(&[][..], Vec::as_slice);
            let candidates = group.iter().filter(|r| {
                r.key == Some(k)
                    && r.t.is_some_and(|rt| match op {
                        MatchOp::GtEq => t >= rt,
                        MatchOp::Gt => t > rt,
                        MatchOp::LtEq => t <= rt,
                        MatchOp::Lt => t < rt,
                    })
            });
            // Nearest value; among ties the row that sorts last by its columns
            // (key and value are equal, so the greatest id).
            let best = candidates.max_by_key(|r| {
                let rt = r.t.unwrap_or_default();
                let nearness = if op.is_backward() { rt } else { -rt };
                (nearness, r.id)
            });
            let best = best.filter(|r| {
                let rt = r.t.unwrap_or_default();
                match max_age {
                    None => true,
                    Some((d, strict)) => match (op.is_backward(), strict) {
                        (true, false) => rt >= t - d,
                        (true, true) => rt > t - d,
                        (false, false) => rt <= t + d,
                        (false, true) => rt < t + d,
                    },
                }
            });
            (l.id, best.map(|r| r.id))
        })
        .collect()
}

/// `string_keys`: the keys as text (the operator's row-encoded key path)
/// instead of BIGINT (its integer path).
fn table(
    rows: &[Row],
    id: &str,
    batch_size: usize,
    partitions: usize,
    string_keys: bool,
) -> MemTable {
    let key_type = if string_keys {
        DataType::Utf8
    } else {
        DataType::Int64
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new(id, DataType::Int64, false),
        Field::new("k", key_type, true),
        Field::new("t", DataType::Int64, true),
    ]));
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
    for (i, chunk) in rows.chunks(batch_size.max(1)).enumerate() {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.id))),
                if string_keys {
                    Arc::new(StringArray::from_iter(
                        chunk.iter().map(|r| r.key.map(|k| format!("key{k}"))),
                    ))
                } else {
                    Arc::new(Int64Array::from_iter(chunk.iter().map(|r| r.key)))
                },
                Arc::new(Int64Array::from_iter(chunk.iter().map(|r| r.t))),
            ],
        )
        .expect("batch");
        parts[i % partitions].push(batch);
    }
    MemTable::try_new(schema, parts).expect("memtable")
}

/// `l ASOF JOIN r` on `k`, `l.t <op> r.t`, within `max_age` of the label.
async fn join_on_k(
    ctx: &datafusion::prelude::SessionContext,
    op: MatchOp,
    max_age: Option<(i64, bool)>,
) -> datafusion::prelude::DataFrame {
    let bound = max_age.map(|(d, strict)| {
        let e = if op.is_backward() {
            col("l.t") - lit(d)
        } else {
            col("l.t") + lit(d)
        };
        (e, strict)
    });
    asof_join(
        ctx.table("l").await.expect("l"),
        ctx.table("r").await.expect("r"),
        AsOfJoinSpec {
            on: vec![("k".into(), "k".into())],
            left_match: "t".into(),
            op,
            right_match: "t".into(),
            max_age: bound,
        },
    )
    .expect("plan")
}

/// Each left row's matched right row (`l_id` → `r_id`); a left row
/// appearing twice fails the test.
fn matched_ids(batches: &[RecordBatch], case: &str) -> HashMap<i64, Option<i64>> {
    let mut got = HashMap::new();
    for batch in batches {
        let column = |name| {
            batch
                .column_by_name(name)
                .expect("id column")
                .as_primitive::<Int64Type>()
        };
        let (l_id, r_id) = (column("l_id"), column("r_id"));
        for i in 0..batch.num_rows() {
            let previous = got.insert(l_id.value(i), r_id.is_valid(i).then(|| r_id.value(i)));
            assert!(
                previous.is_none(),
                "{case}: left row {} appears twice",
                l_id.value(i)
            );
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asof_join_matches_the_reference() {
    let mut rng = Rng(0x5EED);
    let ops = [MatchOp::GtEq, MatchOp::Gt, MatchOp::LtEq, MatchOp::Lt];
    let batch_sizes = [1, 2, 7, 49, 50, 51, 100];
    for case in 0..120 {
        let (nl, nr) = match case % 10 {
            0 => (0, rng.below(50) as usize),
            1 => (rng.below(50) as usize, 0),
            _ => (rng.below(300) as usize, rng.below(400) as usize),
        };
        let keys = 1 + rng.below(20);
        let span = 1 + rng.below(60);
        let left = rows(&mut rng, nl, keys, span, 0);
        let right = rows(&mut rng, nr, keys, span, 1_000_000);
        let op = ops[case % 4];
        let max_age = rng
            .chance(50)
            .then(|| (rng.below(15) as i64, rng.chance(50)));
        let batch_size = batch_sizes[rng.below(7) as usize];
        let target_partitions = 1 + rng.below(4) as usize;
        let string_keys = case % 3 == 2;

        // Each strategy on its own, and the automatic choice.
        for strategy in ["auto", "sweep", "index"] {
            let config = SessionConfig::new()
                .with_target_partitions(target_partitions)
                .with_option_extension(PitlakeOptions::default())
                .set_str("pitlake.asof_join_strategy", strategy);
            let ctx = new_context(config);
            ctx.register_table(
                "l",
                Arc::new(table(
                    &left,
                    "l_id",
                    batch_size,
                    1 + rng.below(3) as usize,
                    string_keys,
                )),
            )
            .expect("register");
            ctx.register_table(
                "r",
                Arc::new(table(
                    &right,
                    "r_id",
                    batch_size,
                    1 + rng.below(3) as usize,
                    string_keys,
                )),
            )
            .expect("register");
            let joined = join_on_k(&ctx, op, max_age).await;
            let batches = joined.collect().await.expect("runs");
            let want = reference(&left, &right, op, max_age);
            let about = format!(
                "case {case} ({strategy}): op {op:?}, max_age {max_age:?}, batch {batch_size}, partitions {target_partitions}"
            );
            assert_same(&matched_ids(&batches, &about), &want, &about);

            // Reading only the ids (the join then holds no right key or
            // time) changes no answer; reading no column keeps every row.
            let ids = join_on_k(&ctx, op, max_age)
                .await
                .select_columns(&["r_id", "l_id"])
                .expect("select");
            let batches = ids.collect().await.expect("runs");
            assert_same(
                &matched_ids(&batches, &about),
                &want,
                &format!("{about}, ids only"),
            );
            let counted = join_on_k(&ctx, op, max_age)
                .await
                .aggregate(vec![], vec![count(lit(1)).alias("n")])
                .expect("count")
                .collect()
                .await
                .expect("runs");
            let n = counted[0].column(0).as_primitive::<Int64Type>().value(0);
            assert_eq!(n as usize, left.len(), "{about}, count(*)");
        }
    }
}

/// Every left row appears once, with the right row the reference gives it.
/// Each left row's id (column `left`) and the right id in column `right`.
fn id_pairs(batches: &[RecordBatch], left: &str, right: &str) -> HashMap<i64, Option<i64>> {
    let mut got = HashMap::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .expect(name)
                .as_primitive::<Int64Type>()
                .clone()
        };
        let (l_id, r_id) = (column(left), column(right));
        for i in 0..batch.num_rows() {
            got.insert(l_id.value(i), r_id.is_valid(i).then(|| r_id.value(i)));
        }
    }
    got
}

fn assert_same(got: &HashMap<i64, Option<i64>>, want: &HashMap<i64, Option<i64>>, about: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{about}: every left row appears once"
    );
    for (id, expected) in want {
        assert_eq!(got.get(id), Some(expected), "{about}: left row {id}");
    }
}

/// Chained joins (each holding only the columns read above it) give each
/// join's own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_joins_match_the_reference() {
    let mut rng = Rng(0xC4A1);
    let ops = [MatchOp::GtEq, MatchOp::Gt, MatchOp::LtEq, MatchOp::Lt];
    for case in 0..40 {
        let keys = 1 + rng.below(12);
        let span = 1 + rng.below(40);
        let sizes = [rng.below(200), rng.below(300), rng.below(300)].map(|n| n as usize);
        let left = rows(&mut rng, sizes[0], keys, span, 0);
        let first = rows(&mut rng, sizes[1], keys, span, 1_000_000);
        let second = rows(&mut rng, sizes[2], keys, span, 2_000_000);
        let (op_a, op_b) = (ops[case % 4], ops[(case / 4) % 4]);
        let batch_size = [1, 7, 50, 51][rng.below(4) as usize];
        let strategy = ["auto", "sweep", "index"][case % 3];
        let config = SessionConfig::new()
            .with_target_partitions(1 + rng.below(3) as usize)
            .with_option_extension(PitlakeOptions::default())
            .set_str("pitlake.asof_join_strategy", strategy);
        let ctx = new_context(config);
        for (name, id, side) in [
            ("l", "l_id", &left),
            ("a", "r_id", &first),
            ("b", "r_id", &second),
        ] {
            let t = table(side, id, batch_size, 2, case % 2 == 1);
            ctx.register_table(name, Arc::new(t)).expect("register");
        }
        let sql = format!(
            "SELECT b.r_id AS b_id, l.l_id, a.r_id AS a_id FROM l \
             ASOF JOIN a MATCH_CONDITION (l.t {} a.t) ON l.k = a.k \
             ASOF JOIN b MATCH_CONDITION (l.t {} b.t) ON l.k = b.k",
            op_a.symbol(),
            op_b.symbol()
        );
        let batches = pitlake::session::sql_dataframe(&ctx, &sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("runs");
        let about = format!("case {case} ({strategy}): {op_a:?} then {op_b:?}, batch {batch_size}");
        let pairs = |right: &str| id_pairs(&batches, "l_id", right);
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            left.len(),
            "{about}"
        );
        assert_same(
            &pairs("a_id"),
            &reference(&left, &first, op_a, None),
            &format!("{about}, first"),
        );
        assert_same(
            &pairs("b_id"),
            &reference(&left, &second, op_b, None),
            &format!("{about}, second"),
        );
    }
}

/// One join of a lag-feature chain: operator, lag of the label's time,
/// maximum age.
type Arm = (MatchOp, i64, Option<(i64, bool)>);

/// Joins of one left side against the same right relation on the same
/// keys (lag features) run as one join with an arm each, reading the right
/// side once; each arm, with its own operator, lag and maximum age, must
/// still match the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_sharing_a_right_relation_match_the_reference() {
    let mut rng = Rng(0xA3A5);
    let ops = [MatchOp::GtEq, MatchOp::Gt, MatchOp::LtEq, MatchOp::Lt];
    for case in 0..48 {
        let keys = 1 + rng.below(12);
        let span = 1 + rng.below(40);
        let (nl, nr) = match case % 8 {
            0 => (rng.below(100) as usize, 0),
            1 => (0, rng.below(100) as usize),
            _ => (rng.below(250) as usize, rng.below(400) as usize),
        };
        let left = rows(&mut rng, nl, keys, span, 0);
        let right = rows(&mut rng, nr, keys, span, 1_000_000);
        let batch_size = [1, 7, 50, 51][rng.below(4) as usize];
        let strategy = ["auto", "sweep", "index"][case % 3];
        let string_keys = case % 4 == 3;
        let arms: Vec<Arm> = (0..2 + case % 3)
            .map(|_| {
                let op = ops[rng.below(4) as usize];
                let lag = [0, 0, 3, 10][rng.below(4) as usize];
                let age = rng
                    .chance(40)
                    .then(|| (rng.below(12) as i64, rng.chance(50)));
                (op, lag, age)
            })
            .collect();
        let config = SessionConfig::new()
            .with_target_partitions(1 + rng.below(3) as usize)
            .with_option_extension(PitlakeOptions::default())
            .set_str("pitlake.asof_join_strategy", strategy);
        let ctx = new_context(config);
        for (name, id, side) in [("l", "l_id", &left), ("a", "r_id", &right)] {
            let t = table(side, id, batch_size, 1 + rng.below(3) as usize, string_keys);
            ctx.register_table(name, Arc::new(t)).expect("register");
        }
        let mut sql = String::from("SELECT l.l_id");
        for j in 0..arms.len() {
            sql.push_str(&format!(", x{j}.r_id AS id{j}"));
        }
        // Arms reading other right columns sweep apart (in one join).
        if case % 2 == 1 {
            sql.push_str(", x0.t AS t0");
        }
        sql.push_str(" FROM l");
        for (j, (op, lag, age)) in arms.iter().enumerate() {
            let at = format!("(l.t - {lag})");
            sql.push_str(&format!(
                " ASOF JOIN a x{j} MATCH_CONDITION ({at} {} x{j}.t) ON l.k = x{j}.k",
                op.symbol()
            ));
            if let Some((d, strict)) = age {
                let (cmp, bound) = match (op.is_backward(), strict) {
                    (true, false) => (">=", format!("{at} - {d}")),
                    (true, true) => (">", format!("{at} - {d}")),
                    (false, false) => ("<=", format!("{at} + {d}")),
                    (false, true) => ("<", format!("{at} + {d}")),
                };
                sql.push_str(&format!(" AND x{j}.t {cmp} {bound}"));
            }
        }
        let frame = pitlake::session::sql_dataframe(&ctx, &sql)
            .await
            .expect("plan");
        let plan = frame
            .clone()
            .create_physical_plan()
            .await
            .expect("physical");
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        let about = format!("case {case} ({strategy}): arms {arms:?}, batch {batch_size}");
        assert_eq!(
            shown.matches("AsOfJoinExec").count(),
            1,
            "{about}: one join with {} arms expected:\n{shown}",
            arms.len()
        );
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .expect("runs");
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            left.len(),
            "{about}"
        );
        for (j, (op, lag, age)) in arms.iter().enumerate() {
            let got = id_pairs(&batches, "l_id", &format!("id{j}"));
            let lagged: Vec<Row> = left
                .iter()
                .map(|r| Row {
                    t: r.t.map(|t| t - lag),
                    ..*r
                })
                .collect();
            let want = reference(&lagged, &right, *op, *age);
            assert_same(&got, &want, &format!("{about}, arm {j}"));
        }
        if case % 2 == 1 {
            // The first arm's time column is its matched row's.
            let times: HashMap<i64, Option<i64>> = right.iter().map(|r| (r.id, r.t)).collect();
            for batch in &batches {
                let ids = batch.column(1).as_primitive::<Int64Type>();
                let t0 = batch
                    .column_by_name("t0")
                    .expect("t0")
                    .as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    let want = ids.is_valid(i).then(|| times[&ids.value(i)]).flatten();
                    assert_eq!(t0.is_valid(i).then(|| t0.value(i)), want, "{about}, t0");
                }
            }
        }
    }
}

/// A metric summed over the plan's ASOF JOINs.
fn join_metric(
    plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    metric: fn(&datafusion::physical_plan::metrics::MetricsSet) -> Option<usize>,
) -> usize {
    let own = match plan.name() {
        "AsOfJoinExec" => plan.metrics().and_then(|m| metric(&m)).unwrap_or(0),
        _ => 0,
    };
    own + plan
        .children()
        .into_iter()
        .map(|c| join_metric(c, metric))
        .sum::<usize>()
}

/// When neither side of a partition fits in memory, the right side is
/// spilled to disk and the left joined in chunks against it, a pass each:
/// the answers are the reference's, in the left's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sides_over_the_memory_limit_spill_and_match_the_reference() {
    let mut rng = Rng(7);
    let left = rows(&mut rng, 60_000, 300, 5_000, 0);
    let right = rows(&mut rng, 80_000, 300, 5_000, 1_000_000);
    for (partitions, limit) in [(1usize, 1usize << 20), (2, 2 << 20)] {
        let config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_batch_size(4_096);
        let ctx = memory_limited(limit, config, true);
        ctx.register_table("l", Arc::new(table(&left, "l_id", 4_093, 1, false)))
            .expect("l");
        ctx.register_table("r", Arc::new(table(&right, "r_id", 4_093, 1, false)))
            .expect("r");
        for (op, max_age) in [
            (MatchOp::GtEq, None),
            (MatchOp::Lt, None),
            (MatchOp::Gt, Some((300, false))),
        ] {
            let case = format!("{op:?} {max_age:?} in {partitions} partitions within {limit} B");
            let (plan, batches) = run_with_plan(join_on_k(&ctx, op, max_age).await, &case).await;
            assert_eq!(
                matched_ids(&batches, &case),
                reference(&left, &right, op, max_age),
                "{case}"
            );
            let spilled = |m: &MetricsSet| m.spilled_bytes();
            assert!(join_metric(&plan, spilled) > 0, "{case}: spilled");
            let spilled_rows = |m: &MetricsSet| m.spilled_rows();
            assert!(
                join_metric(&plan, spilled_rows) >= right.len(),
                "{case}: every right row spilled"
            );
            let right_rows = |m: &MetricsSet| m.sum_by_name("right_rows").map(|v| v.as_usize());
            assert_eq!(
                join_metric(&plan, right_rows),
                right.len(),
                "{case}: right read once"
            );
            let passes = |m: &MetricsSet| m.sum_by_name("right_passes").map(|v| v.as_usize());
            assert!(join_metric(&plan, passes) > partitions, "{case}: passes");
        }
    }
}

/// Without a disk to spill to, sides larger than the memory pool fail with
/// ResourcesExhausted and a message saying what to do, instead of growing
/// until the OS kills us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sides_over_the_memory_limit_without_a_disk_fail_cleanly() {
    let ctx = without_spilling(256 << 10, 1);
    let mut rng = Rng(7);
    let left = rows(&mut rng, 200_000, 5, 100, 0);
    let right = rows(&mut rng, 200_000, 5, 100, 1_000_000);
    ctx.register_table("l", Arc::new(table(&left, "l_id", 8192, 1, false)))
        .expect("l");
    ctx.register_table("r", Arc::new(table(&right, "r_id", 8192, 1, false)))
        .expect("r");
    let err = join_on_k(&ctx, MatchOp::GtEq, None)
        .await
        .collect()
        .await
        .expect_err("over the limit");
    assert_exhausted(
        &err,
        "ASOF JOIN: neither side of a partition fits in memory and it cannot spill to disk",
    );
}

/// `err` is ResourcesExhausted, and says `what`.
fn assert_exhausted(err: &datafusion::error::DataFusionError, what: &str) {
    let text = err.to_string();
    assert!(text.contains(what), "{text}");
    assert!(
        matches!(
            err.find_root(),
            datafusion::error::DataFusionError::ResourcesExhausted(_)
        ),
        "{text}"
    );
}

/// A context with a memory limit of `bytes`, `partitions` target partitions
/// and spilling disabled: whatever does not fit fails.
fn without_spilling(bytes: usize, partitions: usize) -> datafusion::prelude::SessionContext {
    let config = SessionConfig::new().with_target_partitions(partitions);
    memory_limited(bytes, config, false)
}

/// A context with a memory limit of `bytes` that spills to the system's
/// temporary directory, or with `spill` false cannot spill at all.
fn memory_limited(
    bytes: usize,
    config: SessionConfig,
    spill: bool,
) -> datafusion::prelude::SessionContext {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    let mut runtime =
        datafusion::execution::runtime_env::RuntimeEnvBuilder::new().with_memory_limit(bytes, 1.0);
    if !spill {
        runtime = runtime.with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        );
    }
    let runtime = runtime.build_arc().expect("runtime");
    pitlake::session::new_context_with_runtime(config, runtime)
}

/// Runs `frame`, panicking with `case` on failure; the physical plan, for
/// its metrics, and the output.
async fn run_with_plan(
    frame: datafusion::prelude::DataFrame,
    case: &str,
) -> (
    Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    Vec<RecordBatch>,
) {
    let task = Arc::new(frame.task_ctx());
    let plan = frame.create_physical_plan().await.expect("physical plan");
    let batches = datafusion::physical_plan::collect(plan.clone(), task)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{case}: {e}\n{}",
                datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(
                    plan.as_ref()
                )
                .indent(true)
            )
        });
    (plan, batches)
}

/// Labels whose winning right rows exceed the memory limit even after the
/// sweep has shrunk (every label wins its own 1 KB row) fail with
/// ResourcesExhausted and a message saying what to do, not an OOM kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn winners_over_the_memory_limit_fail_cleanly() {
    let ctx = without_spilling(8 << 20, 1);
    wide_winners(&ctx, 20_000);
    let err = join_on_k(&ctx, MatchOp::GtEq, None)
        .await
        .collect()
        .await
        .expect_err("20 MB of winners over an 8 MiB limit");
    assert_exhausted(
        &err,
        "ASOF JOIN: the left side of a partition and its matches do not fit in memory",
    );
}

/// Where the join can spill, labels that fit but whose winning rows would
/// not are joined in passes from the start (the sweep cannot read again the
/// right rows gone past it), in one partition and in two sharing the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn winners_over_the_memory_limit_spill_and_match_the_reference() {
    for partitions in [1usize, 2] {
        let config = SessionConfig::new().with_target_partitions(partitions);
        let ctx = memory_limited(8 << 20, config, true);
        let (left, right) = wide_winners(&ctx, 20_000);
        for op in [MatchOp::GtEq, MatchOp::Lt] {
            let case = format!("{op:?} in {partitions} partitions");
            let (plan, batches) = run_with_plan(join_on_k(&ctx, op, None).await, &case).await;
            assert_eq!(
                matched_ids(&batches, &case),
                reference(&left, &right, op, None),
                "{case}"
            );
            let spilled = |m: &MetricsSet| m.spilled_rows();
            assert!(
                join_metric(&plan, spilled) >= right.len(),
                "{case}: spilled"
            );
        }
    }
}

/// `labels` labels and as many right rows, each with a 1 KB payload,
/// registered in `ctx` as `l` and `r`: label i (key i, time 2i + 1) matches
/// only the right row of key i at 2i, so every label wins its own row.
fn wide_winners(ctx: &datafusion::prelude::SessionContext, labels: i64) -> (Vec<Row>, Vec<Row>) {
    let left: Vec<Row> = (0..labels)
        .map(|i| Row {
            id: i,
            key: Some(i),
            t: Some(2 * i + 1),
        })
        .collect();
    let right: Vec<Row> = (0..labels)
        .map(|i| Row {
            id: 1_000_000 + i,
            key: Some(i),
            t: Some(2 * i),
        })
        .collect();
    ctx.register_table("l", Arc::new(table(&left, "l_id", 4_096, 1, false)))
        .expect("l");
    let schema = Arc::new(Schema::new(vec![
        Field::new("r_id", DataType::Int64, false),
        Field::new("k", DataType::Int64, true),
        Field::new("t", DataType::Int64, true),
        Field::new("payload", DataType::Utf8, false),
    ]));
    let payload = "x".repeat(1_000);
    let batches: Vec<RecordBatch> = right
        .chunks(2_048)
        .map(|rows| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
                    Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.key))),
                    Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.t))),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|_| payload.as_str()),
                    )),
                ],
            )
            .expect("batch")
        })
        .collect();
    let table = MemTable::try_new(schema, vec![batches]).expect("memtable");
    ctx.register_table("r", Arc::new(table)).expect("r");
    (left, right)
}

/// A partition whose labels have no key on the right (here: no labels at
/// all) closes its share of the repartitioned right side instead of leaving
/// it to buffer: one label against a right side many times the memory limit
/// runs, with spilling disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_without_labels_do_not_buffer_the_right_side() {
    let ctx = without_spilling(8 << 20, 4);
    let label = Row {
        id: 0,
        key: Some(3),
        t: Some(500_000),
    };
    let mut rng = Rng(11);
    // 48 MB: until the partitions without labels take their channels (a
    // race with the scan), some rows wait for them, far fewer than this.
    let right = rows(&mut rng, 2_000_000, 100, 1_000_000, 1_000_000);
    ctx.register_table("l", Arc::new(table(&[label], "l_id", 1, 1, false)))
        .expect("l");
    ctx.register_table("r", Arc::new(table(&right, "r_id", 4096, 2, false)))
        .expect("r");
    let batches = join_on_k(&ctx, MatchOp::GtEq, None)
        .await
        .collect()
        .await
        .expect("one label fits");
    let expected = reference(&[label], &right, MatchOp::GtEq, None);
    assert!(expected[&0].is_some(), "the label has a match");
    assert_eq!(matched_ids(&batches, "one label"), expected);
}

/// Row groups of a Parquet right side pruned by their statistics, summed
/// over the plan.
fn row_groups_pruned(plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> usize {
    use datafusion::physical_plan::metrics::MetricValue;
    let own: usize = plan
        .metrics()
        .map(|set| {
            set.iter()
                .map(|m| match m.value() {
                    MetricValue::PruningMetrics {
                        name,
                        pruning_metrics,
                    } if name.as_ref() == "row_groups_pruned_statistics" => {
                        pruning_metrics.pruned()
                    }
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0);
    own + plan
        .children()
        .into_iter()
        .map(row_groups_pruned)
        .sum::<usize>()
}

/// 20,000 right rows over 50 keys and times 0..100,000, written in time
/// order (as appends land) to `dir/right.parquet` in row groups of 500.
async fn time_ordered_parquet(dir: &std::path::Path, rng: &mut Rng) -> (Vec<Row>, String) {
    let mut right = rows(rng, 20_000, 50, 100_000, 1_000_000);
    // Time order, as appends land; NULL times last.
    right.sort_by_key(|r| (r.t.is_none(), r.t));
    let path = dir.join("right.parquet");
    {
        let batch = table(&right, "r_id", right.len(), 1, false);
        let batches = datafusion::prelude::SessionContext::new()
            .read_table(Arc::new(batch))
            .expect("read")
            .collect()
            .await
            .expect("batches");
        let file = std::fs::File::create(&path).expect("create");
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(500))
            .build();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), Some(props))
                .expect("writer");
        for b in &batches {
            writer.write(b).expect("write");
        }
        writer.close().expect("close");
    }
    (right, path.to_str().expect("path").to_string())
}

/// Once the labels are read, the join filters its right input by their keys
/// and reach (and maximum age): a Parquet right side in time order skips row
/// groups no label can match, and every answer stays the reference's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_filter_prunes_row_groups_without_changing_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(23);
    let (right, path) = time_ordered_parquet(dir.path(), &mut rng).await;
    let cases = [
        // Labels early in time: a backward join needs only the first groups.
        (MatchOp::GtEq, None, 0..20_000),
        (MatchOp::Gt, Some((5_000, false)), 40_000..60_000),
        // Labels late in time: a forward join needs only the last groups.
        (MatchOp::LtEq, None, 80_000..100_000),
        (MatchOp::Lt, Some((5_000, true)), 30_000..50_000),
    ];
    for (case, (op, max_age, window)) in cases.into_iter().enumerate() {
        let mut labels = rows(&mut rng, 40, 50, window.end - window.start, 0);
        for l in &mut labels {
            l.t = l.t.map(|t| t + window.start as i64);
        }
        for partitions in [1, 3] {
            let ctx = new_context(SessionConfig::new().with_target_partitions(partitions));
            ctx.register_table("l", Arc::new(table(&labels, "l_id", 7, 2, false)))
                .expect("l");
            ctx.register_parquet("r", &path, Default::default())
                .await
                .expect("r");
            let joined = join_on_k(&ctx, op, max_age).await;
            let plan = joined.create_physical_plan().await.expect("physical");
            let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
                .await
                .expect("runs");
            let expected = reference(&labels, &right, op, max_age);
            let got = matched_ids(&batches, &format!("case {case}"));
            assert_eq!(got, expected, "case {case}, {partitions} partitions");
            let pruned = row_groups_pruned(&plan);
            assert!(
                pruned >= 20,
                "case {case}, {partitions} partitions: {pruned} of 40 row groups pruned"
            );
            // The same plan again, reset as DataFusion requires: the
            // partitions report anew into the filter the scan holds.
            let reset = datafusion::physical_plan::execution_plan::reset_plan_states(plan.clone())
                .expect("reset");
            let again = datafusion::physical_plan::collect(reset, ctx.task_ctx())
                .await
                .expect("runs again");
            assert_eq!(
                matched_ids(&again, &format!("case {case}, again")),
                expected
            );
        }
    }

    // A partition dropped before it reads its labels reports "anything":
    // the others do not wait for it, and answer under a `true` filter.
    let labels = rows(&mut rng, 40, 50, 100_000, 0);
    let ctx = new_context(SessionConfig::new().with_target_partitions(3));
    ctx.register_table("l", Arc::new(table(&labels, "l_id", 7, 2, false)))
        .expect("l");
    ctx.register_parquet("r", &path, Default::default())
        .await
        .expect("r");
    let plan = join_on_k(&ctx, MatchOp::GtEq, None)
        .await
        .create_physical_plan()
        .await
        .expect("physical");
    let partitions = datafusion::physical_plan::ExecutionPlanProperties::output_partitioning(&plan)
        .partition_count();
    let mut streams: Vec<_> = (0..partitions)
        .map(|p| plan.execute(p, ctx.task_ctx()).expect("execute"))
        .collect();
    assert!(streams.len() > 1, "a partitioned plan");
    streams.truncate(1);
    let first = streams.pop().expect("partition 0");
    let batches: Vec<RecordBatch> = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        futures::TryStreamExt::try_collect(first),
    )
    .await
    .expect("partition 0 does not wait for the dropped ones")
    .expect("runs");
    let expected = reference(&labels, &right, MatchOp::GtEq, None);
    let got = matched_ids(&batches, "partition 0");
    // Partition 0 has labels, and some of them match: an empty answer
    // would check nothing.
    assert!(
        got.values().any(Option::is_some),
        "partition 0 answered {} labels, none matched",
        got.len()
    );
    for (id, got) in got {
        assert_eq!(Some(&got), expected.get(&id), "left row {id}");
    }
}

/// Arms sharing one right side filter it by what any arm can match: labels
/// from 40,000 to 60,000 need right rows up to 60,000 for the backward arms
/// (the lagged one up to 40,000) and from 44,000 to 69,000 for the forward
/// one (4,000 after the label, within 5,000). Later row groups are skipped;
/// a filter by the first arm's reach alone would lose the forward arm's
/// matches of the last labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_right_filter_keeps_rows_any_arm_can_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(29);
    let (right, path) = time_ordered_parquet(dir.path(), &mut rng).await;
    let mut labels = rows(&mut rng, 40, 50, 20_000, 0);
    for l in &mut labels {
        l.t = l.t.map(|t| t + 40_000);
    }
    let lagged: Vec<Row> = labels
        .iter()
        .map(|r| Row {
            t: r.t.map(|t| t - 20_000),
            ..*r
        })
        .collect();
    let lead: Vec<Row> = labels
        .iter()
        .map(|r| Row {
            t: r.t.map(|t| t + 4_000),
            ..*r
        })
        .collect();
    let arms = [
        ("a_id", reference(&labels, &right, MatchOp::GtEq, None)),
        ("b_id", reference(&lagged, &right, MatchOp::GtEq, None)),
        (
            "c_id",
            reference(&lead, &right, MatchOp::LtEq, Some((5_000, false))),
        ),
    ];
    for partitions in [1, 3] {
        let ctx = new_context(SessionConfig::new().with_target_partitions(partitions));
        ctx.register_table("l", Arc::new(table(&labels, "l_id", 7, 2, false)))
            .expect("l");
        ctx.register_parquet("r", &path, Default::default())
            .await
            .expect("r");
        let sql = "SELECT l.l_id, a.r_id AS a_id, b.r_id AS b_id, c.r_id AS c_id FROM l \
                   ASOF JOIN r a MATCH_CONDITION (l.t >= a.t) ON l.k = a.k \
                   ASOF JOIN r b MATCH_CONDITION (l.t - 20000 >= b.t) ON l.k = b.k \
                   ASOF JOIN r c MATCH_CONDITION (l.t + 4000 <= c.t) ON l.k = c.k AND c.t <= l.t + 9000";
        let plan = pitlake::session::sql_dataframe(&ctx, sql)
            .await
            .expect("plan")
            .create_physical_plan()
            .await
            .expect("physical");
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(
            shown.contains("arms=["),
            "one join with three arms:\n{shown}"
        );
        let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
            .await
            .expect("runs");
        for (column, want) in &arms {
            let got = id_pairs(&batches, "l_id", column);
            assert_same(&got, want, &format!("{partitions} partitions, {column}"));
        }
        let pruned = row_groups_pruned(&plan);
        assert!(
            (9..=15).contains(&pruned),
            "{partitions} partitions: {pruned} of 40 row groups pruned, about 12 expected"
        );
    }
}

/// Wide right rows (a 1 KB payload each, 200 MB in all) stream past the held
/// labels in chunks bounded by bytes, not only by rows: the join runs under
/// a 128 MiB limit with spilling disabled, and answers like the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_right_rows_are_swept_within_the_memory_limit() {
    let mut rng = Rng(13);
    let left = rows(&mut rng, 1_000, 100, 200_000, 0);
    // Time-ordered, as appends land: most rows win a bucket when they arrive.
    let right: Vec<Row> = (0..200_000)
        .map(|i| Row {
            id: 1_000_000 + i,
            key: Some(rng.below(100) as i64),
            t: Some(i),
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("r_id", DataType::Int64, false),
        Field::new("k", DataType::Int64, true),
        Field::new("t", DataType::Int64, true),
        Field::new("payload", DataType::Utf8, false),
    ]));
    let payload = "x".repeat(1_000);
    let batches: Vec<RecordBatch> = right
        .chunks(8_192)
        .map(|chunk| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|r| r.id))),
                    Arc::new(Int64Array::from_iter(chunk.iter().map(|r| r.key))),
                    Arc::new(Int64Array::from_iter(chunk.iter().map(|r| r.t))),
                    Arc::new(StringArray::from_iter_values(
                        chunk.iter().map(|_| payload.as_str()),
                    )),
                ],
            )
            .expect("batch")
        })
        .collect();
    let right_table = Arc::new(MemTable::try_new(schema, vec![batches]).expect("memtable"));
    // 16 MiB is less than a chunk may gather (64 MiB): when memory is short
    // the waiting rows are swept early instead of failing the query.
    for limit in [128usize << 20, 16 << 20] {
        let ctx = without_spilling(limit, 1);
        ctx.register_table("l", Arc::new(table(&left, "l_id", 4_096, 1, false)))
            .expect("l");
        ctx.register_table("r", right_table.clone()).expect("r");
        for op in [MatchOp::GtEq, MatchOp::Lt] {
            let batches = join_on_k(&ctx, op, None)
                .await
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{op:?} within {} MiB: {e}", limit >> 20));
            assert_eq!(
                matched_ids(&batches, "wide rows"),
                reference(&left, &right, op, None),
                "{op:?} within {} MiB",
                limit >> 20
            );
        }
    }
}

/// Match columns of different time units are compared exactly (a label never
/// sees a value from later within the coarser unit): milliseconds against
/// seconds either way round, all operators, with and without a maximum age
/// in milliseconds, negative times (before 1970) included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_time_units_match_the_reference() {
    let mut rng = Rng(0x0417);
    let ops = [MatchOp::GtEq, MatchOp::Gt, MatchOp::LtEq, MatchOp::Lt];
    for case in 0..96 {
        let keys = 1 + rng.below(6);
        let span = 1 + rng.below(30);
        // Seconds on one side; milliseconds (spanning the same seconds, many
        // of them whole) on the other.
        let (ns, nm) = (rng.below(200) as usize, rng.below(200) as usize);
        let in_seconds = rows(&mut rng, ns, keys, span, 1_000_000);
        let mut in_millis = rows(&mut rng, nm, keys, span, 0);
        for r in &mut in_millis {
            r.t = r.t.map(|t| {
                let sub = [0, 0, 1, 500, 999][rng.below(5) as usize];
                (t - span as i64 / 2) * 1000 + sub
            });
        }
        let mut seconds = in_seconds.clone();
        for r in &mut seconds {
            r.t = r.t.map(|t| t - span as i64 / 2);
        }
        let labels_in_millis = case % 2 == 0;
        let op = ops[(case / 2) % 4];
        let max_age = rng
            .chance(50)
            .then(|| (rng.below(8_000) as i64, rng.chance(50)));
        let strategy = ["auto", "sweep", "index"][case % 3];
        let config = SessionConfig::new()
            .with_target_partitions(1 + rng.below(3) as usize)
            .with_option_extension(PitlakeOptions::default())
            .set_str("pitlake.asof_join_strategy", strategy);
        let ctx = new_context(config);
        // The left side is always `l` (ids below 1M), the right `r`.
        let (left, right) = if labels_in_millis {
            (&in_millis, &seconds)
        } else {
            (&seconds, &in_millis)
        };
        let relabel = |rows: &[Row], base: i64| -> Vec<Row> {
            rows.iter()
                .enumerate()
                .map(|(i, r)| Row {
                    id: base + i as i64,
                    ..*r
                })
                .collect()
        };
        let (left, right) = (relabel(left, 0), relabel(right, 1_000_000));
        let unit = |millis: bool| if millis { "Millisecond" } else { "Second" };
        for (name, id, side, millis) in [
            ("l0", "l_id", &left, labels_in_millis),
            ("r0", "r_id", &right, !labels_in_millis),
        ] {
            let t = table(side, id, 7, 2, false);
            ctx.register_table(name, Arc::new(t)).expect("register");
            let view = format!(
                "SELECT {id}, k, arrow_cast(t, 'Timestamp({}, None)') AS t FROM {name}",
                unit(millis)
            );
            let frame = ctx.sql(&view).await.expect("view");
            ctx.register_table(&name[..1], frame.into_view())
                .expect("register view");
        }
        let bound = match max_age {
            None => String::new(),
            Some((d, strict)) => {
                let cmp = op.bound_symbol(strict);
                let sign = if op.is_backward() { '-' } else { '+' };
                format!(" AND r.t {cmp} l.t {sign} INTERVAL '{d} milliseconds'")
            }
        };
        let sql = format!(
            "SELECT * FROM l ASOF JOIN r MATCH_CONDITION (l.t {} r.t) ON l.k = r.k{bound} ORDER BY l.l_id",
            op.symbol()
        );
        let batches = pitlake::session::sql_dataframe(&ctx, &sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("runs");
        // The reference compares in milliseconds.
        let to_millis = |rows: &[Row], millis: bool| -> Vec<Row> {
            rows.iter()
                .map(|r| Row {
                    t: r.t.map(|t| if millis { t } else { t * 1000 }),
                    ..*r
                })
                .collect()
        };
        let want = reference(
            &to_millis(&left, labels_in_millis),
            &to_millis(&right, !labels_in_millis),
            op,
            max_age,
        );
        let about = format!(
            "case {case} ({strategy}): labels in {}, {sql}",
            unit(labels_in_millis)
        );
        assert_same(&id_pairs(&batches, "l_id", "r_id"), &want, &about);
        // The sort runs below the join (which keeps its left input's order).
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_primitive::<Int64Type>();
                ids.values().to_vec()
            })
            .collect();
        assert!(ids.is_sorted(), "{about}: ORDER BY l.l_id");
    }
}
