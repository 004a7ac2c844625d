//! Integration tests: one binary, one module per area.

mod abuse;
mod asof_fuzz;
mod asof_oracle;
mod asof_pruning;
mod at_rest;
mod auth_abuse;
mod compaction;
mod dbapi;
mod flight;
mod grants;
mod interop;
mod layers;
mod lifecycle;
mod online;
mod online_concurrency;
mod online_example;
mod parallel_scan;
mod policies;
mod principals;
mod python;
mod rich_types;
mod schema_evolution;
mod server_log;
mod shell;
mod small_query;
mod stream_kill;
mod temporary;
mod time_travel;
mod views;
mod workflow;
mod writes;

/// The first cell of the first result of `sql`, as text.
pub async fn one_cell(session: &pitlake::Session, sql: &str) -> String {
    let results = session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pitlake::output::cells(&results[0].batches).expect("cells")[0][0].clone()
}
