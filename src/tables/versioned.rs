//! What planning asks of a warehouse table, without knowing its type: pin a
//! snapshot (time travel), read in ingestion order or with run-time filters
//! (the right side of an ASOF JOIN), tell whether two references read the
//! same rows (shared scans). Planning reaches it through [`versioned`], so the
//! one downcast to the concrete table lives here, beside the table.

use std::any::Any;
use std::sync::Arc;

use datafusion::datasource::TableProvider;

use super::governed::GovernedTable;
use super::table::IcebergTable;
use crate::catalog::{AsOf, resolve_snapshot};
use crate::error::Result;

/// A table of the warehouse, with snapshots.
pub trait Versioned: Send + Sync {
    /// `schema.table`, for messages.
    fn name(&self) -> &str;

    /// The table at the snapshot `snapshot_id`, with that snapshot's schema;
    /// an error that names the table when it never had that snapshot.
    fn at_snapshot(&self, snapshot_id: i64) -> Result<Arc<dyn TableProvider>>;

    /// The snapshot read (`None` for a table without one yet).
    fn snapshot_id(&self) -> Option<i64>;

    /// True for a feature group (ties in an ASOF JOIN are broken by
    /// ingestion order).
    fn is_feature_group(&self) -> bool;

    /// The table read in ingestion order, each row's position in it as a last
    /// column.
    fn in_ingest_order(&self) -> Arc<dyn TableProvider>;

    /// The table read by a reader that takes filters pushed at run time.
    fn with_runtime_filters(&self) -> Arc<dyn TableProvider>;

    /// Whether `other` reads exactly the same rows.
    fn reads_same_rows(&self, other: &dyn Versioned) -> bool;

    fn as_any(&self) -> &dyn Any;
}

/// The warehouse table behind `provider`, if it is one.
pub fn versioned(provider: &dyn TableProvider) -> Option<&dyn Versioned> {
    let any = provider.as_any();
    if let Some(governed) = any.downcast_ref::<GovernedTable>() {
        return governed.as_versioned();
    }
    any.downcast_ref::<IcebergTable>()
        .map(|t| t as &dyn Versioned)
}

impl Versioned for IcebergTable {
    fn name(&self) -> &str {
        IcebergTable::name(self)
    }

    fn at_snapshot(&self, snapshot_id: i64) -> Result<Arc<dyn TableProvider>> {
        let snapshot_id = resolve_snapshot(
            IcebergTable::name(self),
            self.table().metadata(),
            &AsOf::Snapshot(snapshot_id),
        )?;
        Ok(Arc::new(IcebergTable::at_snapshot(self, snapshot_id)?))
    }

    fn snapshot_id(&self) -> Option<i64> {
        IcebergTable::snapshot_id(self)
    }

    fn is_feature_group(&self) -> bool {
        self.feature_group().is_some()
    }

    fn in_ingest_order(&self) -> Arc<dyn TableProvider> {
        Arc::new(IcebergTable::in_ingest_order(self))
    }

    fn with_runtime_filters(&self) -> Arc<dyn TableProvider> {
        Arc::new(IcebergTable::with_runtime_filters(self))
    }

    fn reads_same_rows(&self, other: &dyn Versioned) -> bool {
        other
            .as_any()
            .downcast_ref::<IcebergTable>()
            .is_some_and(|other| IcebergTable::reads_same_rows(self, other))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
