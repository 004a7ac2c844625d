//! The warehouse: Iceberg catalog access (every change verified), feature-group
//! metadata, DDL, views, listings and time-travel resolution. Reading tables is
//! `tables/`.

mod columns;
mod commit;
mod commit_lock;
mod ddl;
mod feature_group;
mod listing;
mod time_travel;
pub mod types;
mod verified;
mod version;
mod views;
mod warehouse;

pub use columns::{ColumnChange, change_columns};
pub use commit::{Change, Staged, commit, metadata_dir};
pub use commit_lock::CommitLock;
pub use ddl::{TableName, alter_feature_group, create_feature_group, create_table, drop_table};
pub use feature_group::FeatureGroup;
pub use listing::{describe_feature_group, show_feature_groups};
pub use time_travel::{AsOf, format_millis, resolve_snapshot};
pub use verified::VerifiedCatalog;
pub use version::CatalogVersion;
pub use views::{View, Views, sqlite_pool};
pub use warehouse::{CATALOG_FILE, CATALOG_NAME, DEFAULT_SCHEMA, Warehouse};
