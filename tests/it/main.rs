//! Integration tests: one binary, one module per area.

mod abuse;
mod asof_fuzz;
mod asof_oracle;
mod asof_pruning;
mod auth_abuse;
mod dbapi;
mod flight;
mod grants;
mod interop;
mod layers;
mod online;
mod online_concurrency;
mod online_example;
mod parallel_scan;
mod principals;
mod python;
mod server_log;
mod shell;
mod small_query;
mod stream_kill;
mod temporary;
mod time_travel;
mod views;
mod writes;
