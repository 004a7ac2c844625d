//! DataFusion contexts with pitlake's planners: the one a session runs its
//! statements on, and one for pitlake's SQL over anything else registered
//! (the Rust path to its operators without a warehouse).

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;

use crate::error::{Error, Result};
use crate::options::PitlakeOptions;
use crate::planning::asof_join::wrap_asof_joins;
use crate::planning::{AsOfJoinPlanner, PitlakeQueryPlanner, TimeTravelPlanner};
use crate::sql::{Statement, parse_sql};

/// DataFusion's default rows per batch.
const DATAFUSION_BATCH_ROWS: usize = 8192;
/// pitlake's: scans of feature histories decode, repartition and join
/// fewer, larger batches (ASOF JOIN at size M: 14% faster, 5% more peak
/// memory; benches/README.md).
const DEFAULT_BATCH_ROWS: usize = 32768;

/// A DataFusion context with pitlake's planners (ASOF JOIN, time travel) and
/// no catalog: for Rust callers using pitlake's operators on their own tables.
pub fn new_context(config: SessionConfig) -> SessionContext {
    new_context_with_runtime(config, Arc::new(RuntimeEnv::default()))
}

/// The machine's memory in bytes (`MemTotal` of /proc/meminfo); `None`
/// where the machine does not say.
pub fn machine_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// [`new_context`] with a given runtime (memory pool, disk manager).
pub fn new_context_with_runtime(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionContext {
    // Rows per batch: DataFusion's 8192 becomes DEFAULT_BATCH_ROWS (another
    // value is kept; `SET datafusion.execution.batch_size` changes it).
    let config = match config.batch_size() {
        DATAFUSION_BATCH_ROWS => config.with_batch_size(DEFAULT_BATCH_ROWS),
        _ => config,
    };
    let config = if config
        .options()
        .extensions
        .get::<PitlakeOptions>()
        .is_some()
    {
        config
    } else {
        config.with_option_extension(PitlakeOptions::default())
    };
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_query_planner(Arc::new(PitlakeQueryPlanner))
        .with_relation_planners(vec![Arc::new(TimeTravelPlanner), Arc::new(AsOfJoinPlanner)])
        .build();
    let ctx = SessionContext::new_with_state(state);
    for function in crate::execution::vectors::vector_functions() {
        ctx.register_udf(function);
    }
    ctx
}

/// Plans one query with pitlake's SQL (ASOF JOIN, literal `VERSION AS OF`) on
/// any DataFusion context made by [`new_context`], e.g. over registered Parquet
/// files: the Rust path to pitlake's operators without a warehouse.
pub async fn sql_dataframe(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    let mut statements = parse_sql(sql)?;
    let (Some(Statement::Sql(statement)), true) = (statements.pop(), statements.is_empty()) else {
        return Err(Error::Invalid(
            "sql_dataframe takes exactly one query".into(),
        ));
    };
    let mut statement = *statement;
    wrap_asof_joins(&mut statement);
    let plan = ctx
        .state()
        .statement_to_plan(DFStatement::Statement(Box::new(statement)))
        .await?;
    Ok(ctx.execute_logical_plan(plan).await?)
}
