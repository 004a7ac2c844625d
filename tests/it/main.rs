//! Integration tests: one binary, one module per area.

mod abuse;
mod asof_fuzz;
mod asof_oracle;
mod asof_pruning;
mod auth_abuse;
mod dbapi;
mod flight;
mod interop;
mod layers;
mod online;
mod online_concurrency;
mod online_example;
mod parallel_scan;
mod python;
mod server_log;
mod small_query;
mod stream_kill;
mod time_travel;
mod writes;
