//! # pitlake
//!
//! A feature store you talk to in SQL: Apache DataFusion with point-in-time
//! semantics over Apache Iceberg tables.
//!
//! ```text
//! SQL text ─► sql/       pitlake dialect, time-travel token pass, feature-group DDL
//!          ─► planning/  relation planners (AS OF → pinned snapshot scans)
//!          ─► DataFusion logical + physical plans
//!          ─► catalog/   Iceberg SQL catalog (SQLite), feature-group metadata,
//!                        metadata tables ($snapshots, $history, $refs, $files)
//!    writes ─► ingest/   conform rows, write Parquet, commit one snapshot
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
