//! The warehouse and its tables: Iceberg catalog access, feature-group
//! metadata, DDL, time-travel resolution and metadata tables.

mod ddl;
mod feature_group;
mod listing;
mod metadata_tables;
mod provider;
mod system;
mod table;
mod time_travel;
pub mod types;
mod verified;
mod warehouse;

pub use ddl::{TableName, alter_feature_group, create_feature_group, create_table, drop_table};
pub use feature_group::FeatureGroup;
pub use listing::{describe_feature_group, show_feature_groups};
pub use metadata_tables::MetadataTable;
pub use provider::WarehouseCatalog;
pub use system::SYSTEM_SCHEMA;
pub use table::IcebergTable;
pub use time_travel::{AsOf, format_millis, resolve_snapshot};
pub use verified::VerifiedCatalog;
pub use warehouse::{CATALOG_FILE, CATALOG_NAME, DEFAULT_SCHEMA, Warehouse, WeakWarehouse};
