//! # pitlake
//!
//! A feature store you talk to in SQL: Apache DataFusion with point-in-time
//! semantics over Apache Iceberg tables.
//!
//! Layers, each depending only on those below it (no cycles between the
//! top-level modules):
//!
//! ```text
//! flight/      Flight SQL service: sign-in, sealed tickets, a session per client, error → status
//! session/     one per client: routes statements (mod.rs), write statements → batches (writes.rs),
//!              catalog listings for Flight (listing.rs), DataFusion contexts (context.rs)
//! sql/         dialect + token pass (Trino/Spark AS OF), statement limits, feature-group DDL, COPY
//! planning/    AS OF clauses → snapshot ids (as_of.rs), relation planners (`t VERSION AS OF id`,
//!              ASOF JOIN → AsOfJoin node), physical planning
//! tables/      DataFusion providers: Iceberg tables, metadata ($snapshots…), system and online tables
//! execution/   AsOfJoinExec, SnapshotScanExec, IngestOrderScanExec
//! store.rs     a warehouse opened for use: catalog + online store + stream logs, wired once
//! ingest/      the write path (one verified commit, then the online store told); stream logs; VACUUM
//! online/      the latest row per entity of online groups, in memory; pending records via a trait
//! catalog/     Iceberg SQL catalog (SQLite, every change read back), feature-group metadata, DDL
//! storage/     reading Iceberg snapshots: changes, rows in ingestion order, stream commit protocol
//! shared/      names and the paths made from them, match operators, hidden column names
//! ```
//!
//! [`Session`] is the entry point: open a warehouse folder, run SQL. A
//! server opens one [`Store`] and gives each client a session on it.

pub mod access;
pub mod allocator;
pub mod catalog;
pub mod error;
pub mod execution;
pub mod file_access;
pub mod flight;
pub mod ingest;
pub mod key_map;
pub mod lifecycle;
pub mod log_writer;
pub mod online;
pub mod options;
pub mod planning;
pub mod session;
pub mod settings;
pub mod shared;
pub mod sql;
pub mod storage;
pub mod store;
pub mod tables;

pub use error::{Error, Result};
pub use session::{Session, StatementResult};
pub use store::Store;
pub mod examples;
pub mod output;
pub mod quickstart;
pub mod repl;
