//! Tables as DataFusion reads them: the warehouse as a catalog provider, an
//! Iceberg table (at a snapshot, or in ingestion order) as a table provider,
//! metadata tables (`t$snapshots`) and system tables (`system.ingest_status`).

mod metadata_tables;
mod provider;
mod system;
mod table;

pub use metadata_tables::MetadataTable;
pub use provider::WarehouseCatalog;
pub use system::SYSTEM_SCHEMA;
pub use table::IcebergTable;
