//! The one place that builds a pitlake session, and runs statements on it.
//!
//! ```text
//! SQL ─► sql::parse_sql ─► Statement ─┬─ feature-group DDL, SHOW, DESCRIBE ─► catalog
//!                                     ├─ INSERT, COPY, CREATE TABLE AS ──────► ingest
//!                                     └─ queries ─► time-travel pre-pass ─► DataFusion
//!                                                   (TimeTravelPlanner pins snapshots)
//! ```

mod context;
mod listing;
mod plans;
mod principals;
mod views;
mod writes;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use futures::TryStreamExt;
use sqlparser::ast::{self, CopyOption, CopyTarget, ObjectName, ObjectType, SchemaName, Use};

pub use context::{machine_memory, new_context, new_context_with_runtime, sql_dataframe};
pub use plans::QueryPlan;

use crate::access::{Privilege, Securable};
use crate::catalog::{self, CATALOG_NAME, DEFAULT_SCHEMA, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::file_access::FileAccess;
use crate::planning::as_of;
use crate::planning::asof_join::wrap_asof_joins;
use crate::planning::temporary::qualify_temporary;
use crate::settings::check_set;
use crate::shared::{NameKind, TEMP_SCHEMA, check_name};
use crate::sql::{Statement, name_parts, parse_sql};
use crate::store::Store;
use crate::tables::{ONLINE_CATALOG, OnlineCatalog, TempBudget, TempTables, WarehouseCatalog};

/// A statement's complete result.
#[derive(Debug, Clone)]
pub struct StatementResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl StatementResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A connection to a warehouse: a DataFusion context whose catalog is the
/// warehouse, with pitlake's planners, and a current schema.
#[derive(Clone)]
pub struct Session {
    ctx: SessionContext,
    store: Store,
    catalog: Arc<WarehouseCatalog>,
    /// Memory one query may hold (DataFusion's pool); unlimited when `None`.
    query_memory: Option<usize>,
    /// The host files COPY may read and write.
    files: FileAccess,
    /// This session's temporary tables (schema `temp`).
    temp: TempTables,
    /// Who runs the statements (the local admin unless a server signed a
    /// user in).
    identity: principals::Identity,
    /// Plans kept between statements (see `plans`).
    plans: Arc<plans::PlanCache>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("warehouse", &self.store.root())
            .finish()
    }
}

impl Session {
    /// Opens the warehouse in `dir` (creating it if needed).
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_store(Store::open(dir).await?).await
    }

    /// Opens the warehouse in `dir`, failing with
    /// [`Error::WarehouseNotFound`] when there is none.
    pub async fn open_existing(dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_store(Store::open_existing(dir).await?).await
    }

    /// A new session (own current schema and settings) on an open warehouse.
    pub async fn with_store(store: Store) -> Result<Self> {
        // Temporary tables of this session and its forks may hold a fifth of
        // the machine's memory in all.
        let budget = machine_memory().map_or(usize::MAX, |bytes| bytes / 5);
        Self::with_temp_budget(store, TempBudget::new(budget)).await
    }

    async fn with_temp_budget(store: Store, budget: Arc<TempBudget>) -> Result<Self> {
        let temp = TempTables::new(budget);
        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_SCHEMA)
            .with_information_schema(true);
        let ctx = new_context(config);
        let catalog = Arc::new(WarehouseCatalog::new(store.clone(), temp.clone()));
        let identity: principals::Identity = Arc::new(std::sync::RwLock::new(
            principals::IdentityState::local_admin(),
        ));
        for function in principals::identity_functions(&identity) {
            ctx.register_udf(function);
        }
        catalog.refresh().await?;
        ctx.register_catalog(CATALOG_NAME, catalog.clone());
        ctx.register_catalog(
            ONLINE_CATALOG,
            Arc::new(OnlineCatalog::new(store.clone(), catalog.clone())),
        );
        Ok(Session {
            ctx,
            store,
            catalog,
            query_memory: None,
            files: FileAccess::Local,
            temp,
            identity,
            plans: Arc::default(),
        })
    }

    /// This session with another policy for the files COPY reads and writes.
    pub fn with_file_access(mut self, files: FileAccess) -> Self {
        self.files = files;
        self
    }

    /// A new session on the same warehouse with the same limits and file
    /// policy, but its own current schema, settings and temporary tables (one
    /// per client); the temporary tables of all forks share one budget.
    pub async fn fork(&self) -> Result<Self> {
        let budget = self.temp.budget().clone();
        Ok(Session::with_temp_budget(self.store.clone(), budget)
            .await?
            .with_query_memory_limit(self.query_memory)
            .with_file_access(self.files.clone()))
    }

    /// This session with a memory limit per query: operators that need more
    /// spill to disk or fail with "resources exhausted", never the process.
    pub fn with_query_memory_limit(mut self, bytes: Option<usize>) -> Self {
        self.query_memory = bytes;
        self
    }

    /// This session's temporary tables; their budget (a fifth of the
    /// machine's memory unless set) is shared with its forks.
    pub fn temporary_tables(&self) -> &TempTables {
        &self.temp
    }

    pub fn query_memory_limit(&self) -> Option<usize> {
        self.query_memory
    }

    /// The DataFusion context (for Rust callers building DataFrames).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn warehouse(&self) -> &Warehouse {
        self.store.warehouse()
    }

    /// The warehouse with its online store and stream logs.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The schema unqualified names resolve in (`USE` changes it).
    pub fn current_schema(&self) -> String {
        self.ctx
            .state()
            .config()
            .options()
            .catalog
            .default_schema
            .clone()
    }

    /// Runs every statement of `sql` in order and returns their results; stops
    /// at the first error.
    pub async fn sql(&self, sql: &str) -> Result<Vec<StatementResult>> {
        let mut results = Vec::new();
        for statement in parse_sql(sql)? {
            results.push(self.execute(statement).await?);
        }
        Ok(results)
    }

    /// Runs one statement and collects its result.
    pub async fn execute(&self, statement: Statement) -> Result<StatementResult> {
        let stream = self.execute_stream(statement).await?;
        let schema = stream.schema();
        let batches = stream.try_collect().await?;
        Ok(StatementResult { schema, batches })
    }

    /// True for statements that only read (queries, EXPLAIN): they can be
    /// planned once to learn their schema and run later, or run again.
    pub fn is_query(statement: &Statement) -> bool {
        matches!(
            statement,
            Statement::Sql(s) if matches!(**s, ast::Statement::Query(_) | ast::Statement::Explain { .. })
        )
    }

    /// The schema a query's result will have, without running it.
    pub async fn query_schema(&self, statement: Statement) -> Result<SchemaRef> {
        Ok(self.describe_query(statement).await?.0)
    }

    /// A query's result schema and the types of its parameters (`$1` … in
    /// order; `None` where the query does not tell).
    pub async fn describe_query(
        &self,
        statement: Statement,
    ) -> Result<(SchemaRef, Vec<Option<DataType>>)> {
        self.catalog.refresh().await?;
        self.refresh_gate().await?;
        let Statement::Sql(statement) = statement else {
            return Err(Error::Internal("not a query".into()));
        };
        let mut statement = *statement;
        self.prepare(&mut statement).await?;
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DFStatement::Statement(Box::new(statement)))
            .await?;
        let types = plan.get_parameter_types()?;
        let mut params: Vec<Option<DataType>> = Vec::new();
        for (name, data_type) in types {
            if let Some(n) = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
                && n >= 1
            {
                if params.len() < n {
                    params.resize(n, None);
                }
                params[n - 1] = data_type;
            }
        }
        Ok((Arc::new(plan.schema().as_arrow().clone()), params))
    }

    /// Runs one statement; queries stream their result batch by batch.
    pub async fn execute_stream(&self, statement: Statement) -> Result<SendableRecordBatchStream> {
        // Tables created by other processes become visible to name listings.
        self.catalog.refresh().await?;
        // Roles and grants changed by any process apply from the next
        // statement, a dropped user's session runs no more, and the catalog
        // hides what the principal may not read.
        self.refresh_gate().await?;
        if !Session::is_query(&statement) {
            // It may change the current schema or the settings plans were
            // made under.
            self.plans.clear();
        }
        match statement {
            Statement::Sql(statement) => self.execute_sql(*statement).await,
            Statement::Principal(statement) => self.execute_principal(statement).await,
            Statement::CreateFeatureGroup(create) => {
                let name = self.resolve_name(&create.name)?;
                self.require_create_in(&name).await?;
                let fg = catalog::FeatureGroup::with_options(
                    create
                        .entity_key
                        .iter()
                        .map(catalog::types::normalize)
                        .collect(),
                    catalog::types::normalize(&create.event_time),
                    create.online,
                    &create.options,
                )?;
                catalog::create_feature_group(
                    self.warehouse(),
                    &name,
                    &fg,
                    &create.columns,
                    create.if_not_exists,
                )
                .await?;
                self.record_owner(Securable::Table(name)).await?;
                done()
            }
            Statement::DropFeatureGroup { name, if_exists } => {
                let name = self.resolve_name(&name)?;
                self.require_manage(&name).await?;
                catalog::drop_table(self.warehouse(), &name, if_exists, true).await?;
                self.store.writes().forget(&name);
                self.forget_grants(Securable::Table(name)).await?;
                done()
            }
            Statement::AlterFeatureGroup {
                name,
                online,
                options,
            } => {
                let name = self.resolve_name(&name)?;
                self.require_manage(&name).await?;
                catalog::alter_feature_group(self.warehouse(), &name, online, &options).await?;
                self.store.writes().committed(&name).await?;
                done()
            }
            Statement::ShowFeatureGroups { schema } => {
                let schema = schema.as_ref().map(catalog::types::normalize);
                let access = self.access().await?;
                let visible = move |schema: &str, table: &str| {
                    TableName::new(schema, table).is_ok_and(|t| access.may(Privilege::Select, &t))
                };
                one_batch(
                    catalog::show_feature_groups(self.warehouse(), schema.as_deref(), &visible)
                        .await?,
                )
            }
            Statement::DescribeFeatureGroup { name } => {
                let name = self.resolve_name(&name)?;
                self.require_read(&name).await?;
                one_batch(catalog::describe_feature_group(self.warehouse(), &name).await?)
            }
            Statement::CopyFrom { table, path } => self.copy_from(&table, &path).await,
            Statement::Vacuum { table } => self.vacuum(table.as_ref()).await,
        }
    }

    async fn execute_sql(&self, statement: ast::Statement) -> Result<SendableRecordBatchStream> {
        match statement {
            ast::Statement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => {
                let name = match &schema_name {
                    SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => {
                        schema_of(name)?
                    }
                    SchemaName::UnnamedAuthorization(_) => {
                        return Err(Error::NotSupported("CREATE SCHEMA AUTHORIZATION".into()));
                    }
                };
                self.require_admin(|| format!("create schema {name}"))
                    .await?;
                match self.warehouse().create_schema(&name).await {
                    Err(Error::AlreadyExists { .. }) if if_not_exists => {}
                    other => {
                        other?;
                        self.record_owner(Securable::Schema(name)).await?;
                    }
                }
                done()
            }
            ast::Statement::Drop {
                object_type,
                if_exists,
                names,
                ..
            } if matches!(object_type, ObjectType::Schema | ObjectType::Table) => {
                for name in &names {
                    if object_type == ObjectType::Schema {
                        let schema = schema_of(name)?;
                        self.require_admin(|| format!("drop schema {schema}"))
                            .await?;
                        match self.warehouse().drop_schema(&schema).await {
                            Err(Error::SchemaNotFound { .. }) if if_exists => {}
                            other => {
                                other?;
                                self.forget_grants(Securable::Schema(schema)).await?;
                            }
                        }
                    } else if let Some(temporary) = self.temporary_name(name) {
                        if !self.temp.drop_table(&temporary) && !if_exists {
                            return Err(Error::TableNotFound {
                                table: format!("{TEMP_SCHEMA}.{temporary}"),
                            });
                        }
                    } else {
                        let table = self.resolve_name(name)?;
                        self.require_manage(&table).await?;
                        catalog::drop_table(self.warehouse(), &table, if_exists, false).await?;
                        self.store.writes().forget(&table);
                        self.forget_grants(Securable::Table(table)).await?;
                    }
                }
                done()
            }
            ast::Statement::CreateTable(create) => self.create_table(create).await,
            ast::Statement::CreateView(create) => self.create_view(create).await,
            ast::Statement::Drop {
                object_type: ObjectType::View,
                if_exists,
                names,
                ..
            } => self.drop_views(&names, if_exists).await,
            ast::Statement::Copy {
                source,
                to: true,
                target: CopyTarget::File { filename },
                options,
                legacy_options,
                ..
            } if legacy_options.is_empty() => {
                let mut format = None;
                for option in options {
                    match option {
                        CopyOption::Format(f) => format = Some(f.value),
                        other => {
                            return Err(Error::NotSupported(format!("COPY TO option {other}")));
                        }
                    }
                }
                self.copy_to(source, filename, format).await
            }
            ast::Statement::Insert(insert) => self.insert(insert).await,
            ast::Statement::Use(target) => {
                let name = match &target {
                    Use::Schema(n) | Use::Database(n) | Use::Object(n) => schema_of(n)?,
                    other => return Err(Error::NotSupported(format!("{other}"))),
                };
                if !self.warehouse().schema_exists(&name).await? {
                    return Err(Error::SchemaNotFound { schema: name });
                }
                let state = self.ctx.state_ref();
                let mut state = state.write();
                state.config_mut().options_mut().catalog.default_schema = name;
                done()
            }
            other => {
                check_set(&other, &self.files)?;
                self.run_query(other).await
            }
        }
    }

    /// Plans and runs a statement with DataFusion, after resolving its
    /// time-travel clauses to snapshot ids.
    pub(super) async fn run_query(
        &self,
        mut statement: ast::Statement,
    ) -> Result<SendableRecordBatchStream> {
        self.prepare(&mut statement).await?;
        self.run_planned(DFStatement::Statement(Box::new(statement)))
            .await
    }

    pub(super) async fn run_planned(
        &self,
        statement: DFStatement,
    ) -> Result<SendableRecordBatchStream> {
        let state = self.ctx.state();
        let plan = state.statement_to_plan(statement).await?;
        self.run_plan(plan).await
    }

    async fn run_plan(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
        let frame = self.ctx.execute_logical_plan(plan).await?;
        let Some(limit) = self.query_memory else {
            return Ok(frame.execute_stream().await?);
        };
        // A pool of its own per query: one query's limit, not the session's.
        let task = frame.task_ctx();
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(
            task.runtime_env().as_ref(),
        )
        .with_memory_limit(limit, 1.0)
        .build_arc()?;
        let physical = frame.create_physical_plan().await?;
        Ok(datafusion::physical_plan::execute_stream(
            physical,
            Arc::new(task.with_runtime(runtime)),
        )?)
    }

    /// The session on one partition: rows come out in input order, so a
    /// write's "row N" is the Nth row of the file or VALUES list.
    pub(super) fn in_order(&self) -> SessionContext {
        let mut state = self.ctx.state();
        let options = state.config_mut().options_mut();
        options.execution.target_partitions = 1;
        options.optimizer.repartition_file_scans = false;
        SessionContext::new_with_state(state)
    }

    /// Unqualified names of this session's temporary tables become `temp.<name>`.
    pub(super) fn qualify_temporary(&self, statement: &mut ast::Statement) {
        qualify_temporary(statement, |name| self.temp.contains(name));
    }

    /// The temporary table `name` means, if it means one: `temp.t`, or an
    /// unqualified `t` while the session has a temporary `t`.
    pub(super) fn temporary_name(&self, name: &ObjectName) -> Option<String> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(catalog::types::normalize))
            .collect();
        match parts.as_slice() {
            [table] if self.temp.contains(table) => Some(table.clone()),
            [schema, table] if schema == TEMP_SCHEMA => Some(table.clone()),
            _ => None,
        }
    }

    /// pitlake's passes over a query before DataFusion plans it, in order:
    /// temporary tables qualified, views expanded, time travel pinned to
    /// snapshot ids, ASOF JOINs wrapped. Every path that plans a query goes
    /// through here, so none can skip one.
    pub(super) async fn prepare(&self, statement: &mut ast::Statement) -> Result<()> {
        self.qualify_temporary(statement);
        self.expand_views(statement).await?;
        self.pin_time_travel(statement).await?;
        wrap_asof_joins(statement);
        Ok(())
    }

    /// Resolves every time-travel clause that is not a literal snapshot id
    /// (timestamps, tags, computed ids) and rewrites it to `VERSION AS OF <id>`.
    pub(super) async fn pin_time_travel(&self, statement: &mut ast::Statement) -> Result<()> {
        as_of::pin_time_travel(statement, self.warehouse(), self).await
    }

    /// Evaluates a constant expression (a scalar subquery included) to one value.
    async fn evaluate_scalar(&self, expr: &ast::Expr) -> Result<arrow::array::ArrayRef> {
        let statements = parse_sql(&format!("SELECT {expr}"))?;
        let Some(Statement::Sql(select)) = statements.into_iter().next() else {
            return Err(Error::Internal(format!("cannot evaluate {expr}")));
        };
        let result: Vec<RecordBatch> = Box::pin(self.run_query(*select))
            .await?
            .try_collect()
            .await?;
        let batch = result
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| Error::Invalid(format!("AS OF {expr} gives no value")))?;
        Ok(batch.column(0).slice(0, 1))
    }

    /// `schema.table` for a name as written, in the current schema if unqualified.
    pub fn resolve_name(&self, name: &ObjectName) -> Result<TableName> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(catalog::types::normalize))
            .collect();
        match parts.as_slice() {
            [table] => TableName::new(self.current_schema(), table),
            [schema, table] => TableName::new(schema, table),
            [cat, schema, table] if cat == CATALOG_NAME => TableName::new(schema, table),
            _ => Err(Error::Invalid(format!(
                "table name {name} is not of the form [schema.]table"
            ))),
        }
    }

    /// The latest feature values of entities from the online store (Rust
    /// API): `keys` holds one array per entity-key column, in key order;
    /// `columns` picks features (all when `None`). One row per entity, in
    /// request order; NULL features where an entity has no fresh value.
    pub async fn online_lookup(
        &self,
        group: &str,
        keys: &[arrow::array::ArrayRef],
        columns: Option<&[String]>,
    ) -> Result<RecordBatch> {
        let name = self.resolve_name(&ObjectName::from(
            group.split('.').map(ast::Ident::new).collect::<Vec<_>>(),
        ))?;
        self.require_read(&name).await?;
        let group = self.store.online().group(&name).await?;
        let projection = group.projection(columns)?;
        group.lookup(keys, &projection)
    }
}

#[async_trait::async_trait]
impl as_of::Evaluate for Session {
    async fn scalar(&self, expr: &ast::Expr) -> Result<arrow::array::ArrayRef> {
        self.evaluate_scalar(expr).await
    }

    fn resolve_name(&self, name: &ObjectName) -> Result<TableName> {
        if let Some(temporary) = self.temporary_name(name) {
            return Err(Error::NotIceberg {
                table: format!("temporary table {temporary}"),
            });
        }
        let table = Session::resolve_name(self, name)?;
        // Time travel reads snapshots: only of what the principal may read.
        if !self.catalog.may_read(&table) {
            return Err(Error::TableNotFound {
                table: table.to_string(),
            });
        }
        Ok(table)
    }
}

/// A schema name from `CREATE SCHEMA x` / `USE x`.
fn schema_of(name: &ObjectName) -> Result<String> {
    let schema = match name_parts(name).as_slice() {
        [schema] => normalize_part(name, schema),
        [cat, schema] if cat == CATALOG_NAME => normalize_part(name, schema),
        _ => return Err(Error::Invalid(format!("{name} is not a schema name"))),
    };
    check_name(NameKind::Schema, &schema)?;
    Ok(schema)
}

fn normalize_part(name: &ObjectName, part: &str) -> String {
    match name.0.last().and_then(|p| p.as_ident()) {
        Some(ident) => catalog::types::normalize(ident),
        None => part.to_string(),
    }
}

/// The result of a statement that returns nothing.
fn done() -> Result<SendableRecordBatchStream> {
    let schema = Arc::new(Schema::empty());
    Ok(Box::pin(MemoryStream::try_new(vec![], schema, None)?))
}

fn one_batch(batch: RecordBatch) -> Result<SendableRecordBatchStream> {
    let schema = batch.schema();
    Ok(Box::pin(MemoryStream::try_new(vec![batch], schema, None)?))
}

/// `count` of rows written, as DataFusion reports DML.
fn count(rows: u64) -> Result<SendableRecordBatchStream> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![rows]))])
        .map_err(Error::arrow("the count of rows written"))?;
    one_batch(batch)
}
