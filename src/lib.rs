//! # pitlake
//!
//! A feature store you talk to in SQL: Apache DataFusion with point-in-time
//! semantics over Apache Iceberg tables.
//!
//! Layers, each depending only on those below it (one knot is left: the
//! warehouse handle still owns the online store and the stream logs, so
//! `catalog` reaches up to `online` and `ingest`):
//!
//! ```text
//! flight/      Flight SQL service: sign-in, sealed tickets, a session per client
//! session.rs   routes statements; settings.rs, file_access.rs: what a session may do
//! sql/         dialect, time-travel token pass, statement limits, pitlake's statements
//! planning/    relation planners (AS OF, ASOF JOIN), logical nodes, their physical planning
//! tables/      DataFusion providers: Iceberg tables, metadata, system and online tables
//! execution/   physical operators: AsOfJoinExec, snapshot and ingestion-order scans
//! ingest/      writes: conform, Parquet, one verified commit; stream logs; VACUUM
//! online/      the latest row per entity, in memory
//! catalog/     the warehouse: Iceberg SQL catalog (verified), feature-group metadata, DDL
//! storage/     reading Iceberg snapshots: changes, rows in ingestion order, stream commits
//! shared/      vocabulary: names and paths, match operators, hidden column names
//! ```
//!
//! [`Session`] is the entry point: open a warehouse folder, run SQL.

pub mod allocator;
pub mod catalog;
pub mod error;
pub mod execution;
pub mod file_access;
pub mod flight;
pub mod ingest;
pub mod key_map;
pub mod online;
pub mod options;
pub mod planning;
pub mod session;
pub mod settings;
pub mod shared;
pub mod sql;
pub mod storage;
pub mod tables;

pub use error::{Error, Result};
pub use session::{Session, StatementResult};
pub mod examples;
pub mod output;
pub mod quickstart;
pub mod repl;
