//! The one place that builds a pitlake session, and routes each statement
//! to the file that runs it. Every statement passes `execute_stream`, which
//! refreshes the catalog and the principal's rights first.
//!
//! ```text
//! SQL ─► sql::parse_sql ─► Statement ─┬─ schema, table, feature-group DDL ─► ddl.rs ─► catalog
//!                                     ├─ views ─────────────────────────────► views.rs
//!                                     ├─ users, roles, grants ──────────────► principals.rs ─► access
//!                                     ├─ INSERT, COPY, CREATE TABLE AS ─────► writes.rs ─► ingest
//!                                     └─ queries ─► prepare.rs (temporary names, views,
//!                                                   time travel, ASOF) ─► run.rs, plans.rs ─► DataFusion
//! ```
//!
//! `names.rs` says what a name means in the session, `results.rs` what a
//! statement gives back, `context.rs` builds the DataFusion context,
//! `listing.rs` answers Flight's catalog listings.

mod audit;
mod columns;
mod context;
mod ddl;
mod lifecycle;
mod listing;
mod names;
mod outbound;
mod plans;
mod policies;
mod prepare;
mod principals;
mod procedures;
mod results;
mod run;
mod sharing;
mod views;
mod writes;

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use sqlparser::ast::{self, CopyOption, CopyTarget, ObjectName, ObjectType};

pub use context::{machine_memory, new_context, new_context_with_runtime, sql_dataframe};
pub use outbound::outbound_pieces;
pub use plans::QueryPlan;
pub use results::StatementResult;

use crate::catalog::{CATALOG_NAME, DEFAULT_SCHEMA, Warehouse};
use crate::error::{Error, Result};
use crate::file_access::FileAccess;
use crate::settings::check_set;
use crate::sql::{Statement, parse_sql};
use crate::store::Store;
use crate::tables::{ONLINE_CATALOG, OnlineCatalog, TempBudget, TempTables, WarehouseCatalog};

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
    /// When the row filters and masks in force were read.
    policies_read_at: policies::PoliciesReadAt,
    /// Where statements come from, for the audit log.
    client: Arc<str>,
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
        let ctx = new_context_with_runtime(config, spilling_into(&store)?);
        let catalog = Arc::new(WarehouseCatalog::new(
            store.clone(),
            temp.clone(),
            crate::sql::parse_expr,
        ));
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
            policies_read_at: Arc::default(),
            client: Arc::from(audit::LOCAL_CLIENT),
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

    /// Runs one statement; queries stream their result batch by batch.
    pub async fn execute_stream(&self, statement: Statement) -> Result<SendableRecordBatchStream> {
        // Tables created by other processes become visible to name listings.
        self.catalog.refresh().await?;
        // Roles and grants changed by any process apply from the next
        // statement, a dropped user's session runs no more, and the catalog
        // hides what the principal may not read.
        self.refresh_gate().await?;
        if Session::is_query(&statement) {
            return self.route(statement).await;
        }
        // It may change the current schema or the settings plans were made
        // under.
        self.plans.clear();
        let text = statement.without_values();
        let kept = statement.clone();
        let result = self.route(statement).await;
        let outcome = audit::Outcome::of(&result);
        self.audit_statement(&kept, &text, outcome).await;
        result
    }

    async fn route(&self, statement: Statement) -> Result<SendableRecordBatchStream> {
        match statement {
            Statement::Sql(statement) => self.execute_sql(*statement).await,
            Statement::Principal(statement) => self.execute_principal(statement).await,
            Statement::Policy(statement) => self.execute_policy(*statement).await,
            Statement::Sharing(statement) => self.execute_sharing(statement).await,
            Statement::CreateFeatureGroup(create) => self.create_feature_group(create).await,
            Statement::DropFeatureGroup { name, if_exists } => {
                self.drop_feature_group(&name, if_exists).await
            }
            Statement::AlterFeatureGroup {
                name,
                online,
                options,
            } => self.alter_feature_group(&name, online, &options).await,
            Statement::ShowFeatureGroups { schema } => {
                self.show_feature_groups(schema.as_ref()).await
            }
            Statement::DescribeFeatureGroup { name } => self.describe_feature_group(&name).await,
            Statement::CopyFrom { table, path } => self.copy_from(&table, &path).await,
            Statement::Vacuum { table } => self.vacuum(table.as_ref()).await,
            Statement::Erase(erase) => self.erase(*erase).await,
            Statement::Ref(tag) => self.tag(tag).await,
            Statement::Columns(columns) => self.change_columns(columns).await,
        }
    }

    async fn execute_sql(&self, statement: ast::Statement) -> Result<SendableRecordBatchStream> {
        match statement {
            ast::Statement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => self.create_schema(&schema_name, if_not_exists).await,
            ast::Statement::Drop {
                object_type,
                if_exists,
                names,
                ..
            } if matches!(object_type, ObjectType::Schema | ObjectType::Table) => {
                self.drop_schemas_or_tables(object_type, &names, if_exists)
                    .await
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
            ast::Statement::Delete(delete) => self.delete(delete).await,
            ast::Statement::Call(call) => self.call(call).await,
            ast::Statement::Use(target) => self.use_schema(&target).await,
            ast::Statement::Prepare { .. }
            | ast::Statement::Execute { .. }
            | ast::Statement::Deallocate { .. } => Err(Error::NotSupported(
                "SQL PREPARE and EXECUTE: a plan kept in the session would outlive the grants \
                 and row filters it was made under; use your client's prepared statements \
                 (Flight SQL, ADBC, JDBC), which pitlake plans again when they change"
                    .into(),
            )),
            ast::Statement::Set(ast::Set::SetSessionAuthorization(param)) => {
                let user = match &param.kind {
                    ast::SetSessionAuthorizationParamKind::User(user) => Some(user),
                    ast::SetSessionAuthorizationParamKind::Default => None,
                };
                self.set_session_authorization(user).await
            }
            other => {
                check_set(&other, &self.files)?;
                self.run_query(other).await
            }
        }
    }

    /// The latest feature values of entities from the online store (Rust
    /// API): `keys` holds one array per entity-key column, in key order;
    /// `columns` picks features (all when `None`). One row per entity, in
    /// request order; NULL features where an entity has no fresh value or
    /// the group's row filter hides its latest row.
    pub async fn online_lookup(
        &self,
        group: &str,
        keys: &[arrow::array::ArrayRef],
        columns: Option<&[String]>,
    ) -> Result<RecordBatch> {
        let name = self.resolve_name(&ObjectName::from(
            group.split('.').map(ast::Ident::new).collect::<Vec<_>>(),
        ))?;
        self.lookup(&name, keys, columns).await
    }
}

/// A runtime whose queries spill into the warehouse's spill folder (each
/// session a temporary folder of its own there, removed with it).
fn spilling_into(store: &Store) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    let disk = DiskManagerBuilder::default()
        .with_mode(DiskManagerMode::Directories(vec![store.spill_dir()?]));
    Ok(datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_disk_manager_builder(disk)
        .build_arc()?)
}
