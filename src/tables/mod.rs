//! Tables as DataFusion reads them: the warehouse as a catalog provider, an
//! Iceberg table (at a snapshot, or in ingestion order) as a table provider,
//! metadata tables (`t$snapshots`), system tables (`system.ingest_status`), a
//! session's temporary tables (`temp.labels`) and
//! the online store's groups as tables (`online.<schema>.<group>`).

mod governed;
mod metadata_tables;
mod online;
mod provider;
mod system;
mod table;
mod temporary;
mod versioned;
mod view;

pub use governed::{ExprParser, GovernedTable, govern_lookup};
pub use metadata_tables::MetadataTable;
pub use online::{ONLINE_CATALOG, OnlineCatalog, OnlineLookupExec, is_online_table};
pub use provider::WarehouseCatalog;
pub use system::SYSTEM_SCHEMA;
pub use table::IcebergTable;
pub use temporary::{TempBudget, TempSchema, TempTable, TempTables};
pub use versioned::{Versioned, versioned};
pub use view::ViewTable;
