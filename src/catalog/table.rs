//! A DataFusion table over one Iceberg table, read at one snapshot.

use std::any::Any;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::table::Table;
use iceberg_datafusion::IcebergStaticTableProvider;

use super::feature_group::FeatureGroup;
use crate::error::{Error, Result};
use crate::execution::SnapshotScanExec;

/// An Iceberg table as loaded at planning time, pinned to one snapshot.
///
/// Loading the table once per statement and pinning it makes every read within
/// a statement see the same snapshot, even while other writers commit.
#[derive(Debug, Clone)]
pub struct IcebergTable {
    /// `schema.table`, for messages.
    name: String,
    table: Table,
    /// The snapshot read; `None` for a table with no snapshot yet.
    snapshot_id: Option<i64>,
    /// True when a time-travel clause chose the snapshot (read with its schema).
    pinned: bool,
    schema: SchemaRef,
    feature_group: Option<FeatureGroup>,
    /// Streamed rows acknowledged but not yet in the snapshot read (current
    /// reads only): the table as this process knows it.
    pending: Vec<RecordBatch>,
}

impl IcebergTable {
    /// The table at its current snapshot, with its current schema.
    pub fn current(name: String, table: Table) -> Result<Self> {
        let metadata = table.metadata();
        let schema = schema_to_arrow_schema(metadata.current_schema())
            .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?;
        let feature_group = FeatureGroup::from_properties(metadata.properties())?;
        Ok(IcebergTable {
            snapshot_id: metadata.current_snapshot_id(),
            pinned: false,
            name,
            table,
            schema: Arc::new(schema),
            feature_group,
            pending: Vec::new(),
        })
    }

    /// Adds streamed rows not yet committed to the current snapshot.
    pub fn with_pending(mut self, pending: Vec<RecordBatch>) -> Self {
        self.pending = pending;
        self
    }

    /// The same table at an older snapshot, read with that snapshot's schema.
    pub fn at_snapshot(&self, snapshot_id: i64) -> Result<Self> {
        let metadata = self.table.metadata();
        let snapshot =
            metadata
                .snapshot_by_id(snapshot_id)
                .ok_or_else(|| Error::SnapshotNotFound {
                    table: self.name.clone(),
                    snapshot_id,
                })?;
        let schema = snapshot
            .schema(metadata)
            .and_then(|s| schema_to_arrow_schema(&s))
            .map_err(Error::iceberg(format!(
                "cannot read the schema of {} at snapshot {snapshot_id}",
                self.name
            )))?;
        Ok(IcebergTable {
            snapshot_id: Some(snapshot_id),
            pinned: true,
            schema: Arc::new(schema),
            pending: Vec::new(),
            ..self.clone()
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn snapshot_id(&self) -> Option<i64> {
        self.snapshot_id
    }

    pub fn feature_group(&self) -> Option<&FeatureGroup> {
        self.feature_group.as_ref()
    }
}

#[async_trait]
impl TableProvider for IcebergTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        match self.snapshot_id.filter(|_| self.pinned) {
            Some(id) => {
                let reader =
                    IcebergStaticTableProvider::try_new_from_table_snapshot(self.table.clone(), id)
                        .await
                        .map_err(iceberg_datafusion::to_datafusion_error)?;
                let scan = reader.scan(state, projection, filters, limit).await?;
                Ok(Arc::new(SnapshotScanExec::new(self.name.clone(), id, scan)))
            }
            None => {
                let scan = IcebergStaticTableProvider::try_new_from_table(self.table.clone())
                    .await
                    .map_err(iceberg_datafusion::to_datafusion_error)?
                    .scan(state, projection, filters, limit)
                    .await?;
                if self.pending.is_empty() {
                    return Ok(scan);
                }
                let pending: Vec<RecordBatch> = self
                    .pending
                    .iter()
                    .map(|b| match projection {
                        Some(p) => b.project(p),
                        None => Ok(b.clone()),
                    })
                    .map(|b| b.and_then(|b| b.with_schema(scan.schema())))
                    .collect::<std::result::Result<_, _>>()?;
                let memory = MemorySourceConfig::try_new_exec(&[pending], scan.schema(), None)?;
                UnionExec::try_new(vec![scan, memory])
            }
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // The Iceberg scan prunes files and row groups with what it can convert
        // and DataFusion re-applies every filter above it.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}
