//! A DataFusion table over one Iceberg table, read at one snapshot.

use std::any::Any;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::table::Table;

use crate::catalog::FeatureGroup;
use crate::error::{Error, Result};
use crate::execution::SnapshotScanExec;
use crate::execution::ingest_order::{INGEST_ORDER_COLUMN, IngestOrderScanExec};
use crate::storage::{ReadAt, without_nested_ids};

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
    /// Which reader scans the table.
    reader: Reader,
}

/// Which reader scans an [`IcebergTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// A plain read: pitlake's [`IngestOrderScanExec`] without the order
    /// column, pruning with the filters pushed into it (a `WHERE` above).
    Iceberg,
    /// pitlake's [`IngestOrderScanExec`], which also takes filters pushed at
    /// run time (an ASOF JOIN's right-side filter, for file and row-group
    /// pruning). `ordered`: each row's position in ingestion order is a last
    /// column (a feature group on the right of an ASOF JOIN breaks ties by it).
    Pitlake { ordered: bool },
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
            schema: Arc::new(without_nested_ids(&schema)),
            feature_group,
            pending: Vec::new(),
            reader: Reader::Iceberg,
        })
    }

    /// This table read in ingestion order, with [`INGEST_ORDER_COLUMN`]
    /// (each row's position in that order) after its columns.
    pub fn in_ingest_order(&self) -> Self {
        let mut fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(INGEST_ORDER_COLUMN, DataType::Int64, false));
        IcebergTable {
            schema: Arc::new(Schema::new(fields)),
            reader: Reader::Pitlake { ordered: true },
            ..self.clone()
        }
    }

    /// This table read by pitlake's reader, which takes filters pushed at run
    /// time (a plain table on the right of an ASOF JOIN).
    pub fn with_runtime_filters(&self) -> Self {
        IcebergTable {
            reader: Reader::Pitlake { ordered: false },
            ..self.clone()
        }
    }

    /// Whether `other` reads the same rows: the same table and metadata,
    /// snapshot and schema, and the same streamed rows not yet committed
    /// (the same batches). Two references to one table in a statement are
    /// two providers; when they read the same rows, ASOF JOINs over them
    /// share one scan.
    pub fn reads_same_rows(&self, other: &IcebergTable) -> bool {
        let same_batches = |a: &RecordBatch, b: &RecordBatch| {
            a.num_rows() == b.num_rows()
                && a.columns()
                    .iter()
                    .zip(b.columns())
                    .all(|(x, y)| Arc::ptr_eq(x, y))
        };
        self.name == other.name
            && self.table.metadata_location() == other.table.metadata_location()
            && self.snapshot_id == other.snapshot_id
            && self.pinned == other.pinned
            && self.reader == other.reader
            && self.schema == other.schema
            && self.pending.len() == other.pending.len()
            && self
                .pending
                .iter()
                .zip(&other.pending)
                .all(|(a, b)| same_batches(a, b))
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
            schema: Arc::new(without_nested_ids(&schema)),
            pending: Vec::new(),
            ..self.clone()
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn scan_with_pitlake_reader(
        &self,
        projection: Option<&Vec<usize>>,
        ordered: bool,
        partitions: usize,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        // The order column, when there is one, is the schema's last.
        let order_index = ordered.then(|| self.schema.fields().len() - 1);
        let columns: Vec<usize> = projection
            .iter()
            .copied()
            .filter(|i| Some(*i) != order_index)
            .collect();
        let with_order = order_index.is_some_and(|o| projection.contains(&o));
        // Table columns first, the order column last, as the scan emits them.
        let mut output: Vec<usize> = columns.clone();
        if let Some(o) = order_index.filter(|_| with_order) {
            output.push(o);
        }
        let fields: Vec<Field> = output
            .iter()
            .map(|i| self.schema.field(*i).clone())
            .collect();
        let names: Vec<String> = columns
            .iter()
            .map(|i| self.schema.field(*i).name().clone())
            .collect();
        let pending = self
            .pending
            .iter()
            .map(|b| b.project(&columns))
            .collect::<std::result::Result<_, _>>()?;
        let scan: Arc<dyn ExecutionPlan> = Arc::new(
            IngestOrderScanExec::new(
                self.name.clone(),
                self.table.clone(),
                self.read_at()?,
                names,
                with_order,
                pending,
                Arc::new(Schema::new(fields)),
            )
            .with_partitions(partitions),
        );
        if output == *projection {
            return Ok(scan);
        }
        // DataFusion asked for another column order: restore it.
        let exprs = projection
            .iter()
            .map(|i| {
                let at = output.iter().position(|o| o == i).unwrap_or_default();
                let name = self.schema.field(*i).name().clone();
                (
                    Arc::new(datafusion::physical_expr::expressions::Column::new(
                        &name, at,
                    )) as Arc<dyn datafusion::physical_expr::PhysicalExpr>,
                    name,
                )
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(
            datafusion::physical_plan::projection::ProjectionExec::try_new(exprs, scan)?,
        ))
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The snapshot read and the schema it is read with: its own for time
    /// travel, the table's current one otherwise (the columns as they are
    /// now, whichever schema the snapshot was committed under).
    fn read_at(&self) -> Result<Option<ReadAt>> {
        let Some(snapshot_id) = self.snapshot_id else {
            return Ok(None);
        };
        if self.pinned {
            return ReadAt::snapshot(&self.name, &self.table, snapshot_id).map(Some);
        }
        Ok(Some(ReadAt {
            snapshot_id,
            schema: self.table.metadata().current_schema().clone(),
        }))
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
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let partitions = state.config().target_partitions();
        let ordered = match self.reader {
            Reader::Pitlake { ordered } => ordered,
            Reader::Iceberg => false,
        };
        let scan = self.scan_with_pitlake_reader(projection, ordered, partitions)?;
        // A plain read of a time-travel snapshot names it in plans.
        match self
            .snapshot_id
            .filter(|_| self.pinned && self.reader == Reader::Iceberg)
        {
            Some(id) => Ok(Arc::new(SnapshotScanExec::new(self.name.clone(), id, scan))),
            None => Ok(scan),
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // The scan prunes files, row groups and rows with the filters pushed
        // into it as physical expressions (what converts to Iceberg) and
        // DataFusion re-applies every filter above it.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}
