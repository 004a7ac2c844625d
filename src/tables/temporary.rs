//! Temporary tables: a session's own tables, in memory, gone with the
//! session (a Flight client's connection, a `pitlake sql` run). A labels
//! DataFrame can be joined this way without becoming a table of the
//! warehouse. They live in the schema `temp`, and unqualified names find
//! them before the current schema's tables (the planning layer qualifies
//! them).
//!
//! Every temporary table of a process draws on one [`TempBudget`], so a
//! client cannot hold the server's memory with them: a write past it fails
//! with "resources exhausted" and adds nothing.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session as DFSession};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use datafusion::prelude::Expr;
use futures::{Stream, StreamExt};

use crate::error::{Error, Result};
use crate::shared::{NameKind, check_name};

/// The memory all temporary tables of a process may hold.
#[derive(Debug)]
pub struct TempBudget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl TempBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(TempBudget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        })
    }

    /// Changes the limit; tables already over it keep their rows.
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::SeqCst);
    }

    /// Bytes the temporary tables hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn take(&self, bytes: usize, table: &str) -> Result<()> {
        let before = self.used.fetch_add(bytes, Ordering::SeqCst);
        let limit = self.limit.load(Ordering::SeqCst);
        if before.saturating_add(bytes) > limit {
            self.used.fetch_sub(bytes, Ordering::SeqCst);
            return Err(Error::ResourceExhausted(format!(
                "temporary table {table}: temporary tables may hold {limit} bytes in all and {before} are taken; \
                 write large data to a table of the warehouse instead"
            )));
        }
        Ok(())
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// One session's temporary tables.
#[derive(Debug, Clone)]
pub struct TempTables {
    tables: Arc<RwLock<BTreeMap<String, Arc<TempTable>>>>,
    budget: Arc<TempBudget>,
}

impl TempTables {
    pub fn new(budget: Arc<TempBudget>) -> Self {
        TempTables {
            tables: Arc::default(),
            budget,
        }
    }

    /// The budget these tables draw on (shared by a process's sessions).
    pub fn budget(&self) -> &Arc<TempBudget> {
        &self.budget
    }

    pub fn get(&self, name: &str) -> Option<Arc<TempTable>> {
        self.tables.read().ok()?.get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn names(&self) -> Vec<String> {
        self.tables
            .read()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Creates an empty table; `None` when it exists and `if_not_exists`.
    pub fn create(
        &self,
        name: &str,
        schema: SchemaRef,
        if_not_exists: bool,
    ) -> Result<Option<Arc<TempTable>>> {
        check_name(NameKind::Table, name)?;
        let mut tables = self
            .tables
            .write()
            .map_err(|_| Error::Internal("temporary tables poisoned".into()))?;
        if tables.contains_key(name) {
            if if_not_exists {
                return Ok(None);
            }
            return Err(Error::AlreadyExists {
                kind: "temporary table",
                name: name.to_string(),
            });
        }
        // The table itself (its schema, however wide) draws on the budget
        // too, so empty tables cannot hold the memory either.
        let overhead = table_overhead(&schema);
        self.budget.take(overhead, name)?;
        let table = Arc::new(TempTable::new(name, schema, self.budget.clone(), overhead));
        tables.insert(name.to_string(), table.clone());
        Ok(Some(table))
    }

    /// Drops `table` if `name` still names it (a statement that made it and
    /// failed, or was cancelled, takes back only its own table).
    pub fn drop_made(&self, name: &str, table: &Arc<TempTable>) {
        if let Ok(mut tables) = self.tables.write()
            && tables.get(name).is_some_and(|t| Arc::ptr_eq(t, table))
        {
            tables.remove(name);
        }
    }

    /// Drops a table; false when there is none of that name.
    pub fn drop_table(&self, name: &str) -> bool {
        self.tables
            .write()
            .map(|mut t| t.remove(name).is_some())
            .unwrap_or(false)
    }
}

/// A temporary table: its rows in memory.
#[derive(Debug)]
pub struct TempTable {
    rows: Arc<Rows>,
}

#[derive(Debug)]
struct Rows {
    name: String,
    schema: SchemaRef,
    batches: RwLock<Vec<RecordBatch>>,
    budget: Arc<TempBudget>,
    /// What the table takes from the budget before any row.
    overhead: usize,
}

/// The bytes a table of `schema` holds without rows (an estimate: its
/// fields, their names and metadata, and a fixed part).
fn table_overhead(schema: &SchemaRef) -> usize {
    fn field_bytes(field: &arrow::datatypes::Field) -> usize {
        let metadata: usize = field
            .metadata()
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        let children: usize = match field.data_type() {
            arrow::datatypes::DataType::Struct(fields) => {
                fields.iter().map(|f| field_bytes(f)).sum()
            }
            arrow::datatypes::DataType::List(f)
            | arrow::datatypes::DataType::LargeList(f)
            | arrow::datatypes::DataType::FixedSizeList(f, _)
            | arrow::datatypes::DataType::Map(f, _) => field_bytes(f),
            _ => 0,
        };
        std::mem::size_of::<arrow::datatypes::Field>() + field.name().len() + metadata + children
    }
    1024 + schema
        .fields()
        .iter()
        .map(|f| field_bytes(f))
        .sum::<usize>()
}

impl TempTable {
    fn new(name: &str, schema: SchemaRef, budget: Arc<TempBudget>, overhead: usize) -> Self {
        TempTable {
            rows: Arc::new(Rows {
                name: name.to_string(),
                schema,
                batches: RwLock::default(),
                budget,
                overhead,
            }),
        }
    }

    /// Appends every batch of `input` (of this table's schema), or nothing
    /// when one fails or the budget runs out. Returns the rows appended.
    pub async fn append(
        &self,
        input: impl Stream<Item = Result<RecordBatch>> + Send,
    ) -> Result<u64> {
        self.rows.append(input).await
    }
}

impl Rows {
    async fn append(&self, input: impl Stream<Item = Result<RecordBatch>> + Send) -> Result<u64> {
        let mut input = std::pin::pin!(input);
        let mut taken = 0;
        let mut batches = Vec::new();
        let mut failure = None;
        while let Some(batch) = input.next().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let bytes = batch.get_array_memory_size();
            if let Err(e) = self.budget.take(bytes, &self.name) {
                failure = Some(e);
                break;
            }
            taken += bytes;
            batches.push(batch);
        }
        if let Some(e) = failure {
            self.budget.give_back(taken);
            return Err(e);
        }
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        match self.batches.write() {
            Ok(mut held) => held.extend(batches),
            Err(_) => {
                self.budget.give_back(taken);
                return Err(Error::Internal(format!(
                    "temporary table {} poisoned",
                    self.name
                )));
            }
        }
        Ok(rows)
    }

    fn snapshot(&self) -> Vec<RecordBatch> {
        self.batches.read().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Drop for Rows {
    fn drop(&mut self) {
        let held: usize = self
            .batches
            .get_mut()
            .map(|b| b.iter().map(RecordBatch::get_array_memory_size).sum())
            .unwrap_or(0);
        self.budget.give_back(held + self.overhead);
    }
}

#[async_trait]
impl TableProvider for TempTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.rows.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn DFSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(
            &[self.rows.snapshot()],
            self.rows.schema.clone(),
            projection.cloned(),
        )?)
    }

    async fn insert_into(
        &self,
        _state: &dyn DFSession,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} into temporary table {}",
                self.rows.name
            )));
        }
        let sink = Sink(self.rows.clone());
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// INSERT into a temporary table, as DataFusion plans it.
#[derive(Debug)]
struct Sink(Arc<Rows>);

impl DisplayAs for Sink {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "TemporaryTableSink: {}", self.0.name)
    }
}

#[async_trait]
impl DataSink for Sink {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> &SchemaRef {
        &self.0.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let input = data.map(|b| b.map_err(Error::from));
        self.0
            .append(input)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

/// The schema `temp`: one session's temporary tables.
#[derive(Debug)]
pub struct TempSchema(pub TempTables);

#[async_trait]
impl SchemaProvider for TempSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.0.names()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.0.get(name).map(|t| t as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}
