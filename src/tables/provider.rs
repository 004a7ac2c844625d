//! The warehouse as a DataFusion catalog: schemas are Iceberg namespaces,
//! tables are loaded from the catalog database at each statement.
//!
//! A view is listed with the tables and described by [`ViewTable`]; the
//! session expands it before planning.
//!
//! DataFusion asks for table *names* synchronously (`SHOW TABLES`,
//! `information_schema`), so the name lists are cached and brought up to date
//! before every statement: listed again when the catalog's version moved (any
//! commit, ours or another process's), kept otherwise. Tables themselves are
//! loaded at each statement as the catalog has them (see
//! `Warehouse::try_load_table`).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DFResult;

use super::governed::{ExprParser, GovernedTable};
use super::metadata_tables::MetadataTable;
use super::system::{SYSTEM_SCHEMA, SystemSchema};
use super::table::IcebergTable;
use super::temporary::{TempSchema, TempTables};
use super::view::ViewTable;
use crate::access::{Access, PolicySet, Privilege, Published, Securable, TablePolicy};
use crate::catalog::CatalogVersion;
use crate::error::{Error, Result};
use crate::shared::TEMP_SCHEMA;
use crate::shared::TableName;
use crate::store::Store;

/// Table names per schema, as of the last refresh.
type NameCache = Arc<RwLock<BTreeMap<String, Vec<String>>>>;

/// The warehouse seen as one DataFusion catalog.
#[derive(Debug, Clone)]
pub struct WarehouseCatalog {
    store: Store,
    names: NameCache,
    /// `schema.view` of every view, as of the last refresh.
    views: Arc<RwLock<std::collections::HashSet<String>>>,
    temp: TempTables,
    /// What the session's principal may do: tables they may not read do not
    /// exist for them.
    access: Gate,
    /// Row filters and masks: tables that have them are read through them.
    policies: PolicyGate,
    /// Parses their expressions.
    parse: ExprParser,
    /// Published feature groups: one the principal may not read is there
    /// for them, its rows denied.
    published: PublishedGate,
    /// The catalog's version `names` were listed at.
    listed: Arc<RwLock<Option<CatalogVersion>>>,
}

/// The session's [`Access`], shared with the schemas handed to DataFusion.
type Gate = Arc<RwLock<Access>>;

/// The policies in force, shared with the schemas handed to DataFusion.
type PolicyGate = Arc<RwLock<Arc<PolicySet>>>;

/// The published feature groups, shared with the schemas handed to DataFusion.
type PublishedGate = Arc<RwLock<Arc<Published>>>;

impl WarehouseCatalog {
    /// The warehouse, plus one session's temporary tables as schema `temp`.
    pub fn new(store: Store, temp: TempTables, parse: ExprParser) -> Self {
        WarehouseCatalog {
            store,
            names: NameCache::default(),
            views: Arc::default(),
            temp,
            access: Arc::new(RwLock::new(Access::everything())),
            policies: Arc::default(),
            parse,
            published: Arc::default(),
            listed: Arc::default(),
        }
    }

    /// What the session's principal may do from now on.
    pub fn set_access(&self, access: Access) {
        if let Ok(mut gate) = self.access.write() {
            *gate = access;
        }
    }

    /// The row filters and masks tables are read through from now on.
    pub fn set_policies(&self, policies: Arc<PolicySet>) {
        if let Ok(mut gate) = self.policies.write() {
            *gate = policies;
        }
    }

    /// The feature groups published from now on.
    pub fn set_published(&self, published: Arc<Published>) {
        if let Ok(mut gate) = self.published.write() {
            *gate = published;
        }
    }

    /// Whether `name` is a published feature group.
    pub fn is_published(&self, name: &TableName) -> bool {
        is_published(&self.published, name)
    }

    /// The published feature groups, as of the last refresh.
    pub fn published(&self) -> Arc<Published> {
        self.published
            .read()
            .map(|p| Arc::clone(&p))
            .unwrap_or_default()
    }

    /// The error of reading `name`, which the principal may not read: it
    /// does not exist for them, unless it is published.
    pub fn unreadable(&self, name: &TableName) -> Error {
        unreadable(&self.access, &self.published, name)
    }

    /// The row filter and masks of `name`, if it has any.
    pub fn policy_of(&self, name: &TableName) -> Option<Arc<TablePolicy>> {
        policy_of(&self.policies, name)
    }

    /// `provider` (the table `name`) as the principal may read it: through
    /// its row filter and masks when it has them.
    pub fn governed(
        &self,
        name: &TableName,
        provider: Arc<dyn TableProvider>,
    ) -> Arc<dyn TableProvider> {
        governed(&self.policies, self.parse, name, provider)
    }

    /// The parser of policy expressions.
    pub fn policy_parser(&self) -> ExprParser {
        self.parse
    }

    /// Whether the session's principal may read `name`.
    pub fn may_read(&self, name: &TableName) -> bool {
        may_read(&self.access, name)
    }

    /// Re-reads schema and table names, so tables created by other processes
    /// (another pitlake, pyiceberg) are listed.
    ///
    /// Returns the catalog's version the names are now as of (`None` when
    /// the catalog cannot tell; the names were then listed anyway).
    pub async fn refresh(&self) -> Result<Option<CatalogVersion>> {
        // Read before listing: a change while listing moves it again, and
        // the next statement lists once more.
        let version = self.store.warehouse().version().await;
        if version.is_some() && *self.listed.read().unwrap_or_else(|e| e.into_inner()) == version {
            return Ok(version);
        }
        let mut fresh = BTreeMap::new();
        let mut views = std::collections::HashSet::new();
        let warehouse = self.store.warehouse();
        for schema in warehouse.list_schemas().await? {
            let mut names = warehouse.list_tables(&schema).await.unwrap_or_default();
            for view in warehouse.views().list(&schema).await.unwrap_or_default() {
                views.insert(format!("{schema}.{view}"));
                names.push(view);
            }
            names.sort();
            fresh.insert(schema, names);
        }
        if let Ok(mut names) = self.names.write() {
            *names = fresh;
        }
        if let Ok(mut known) = self.views.write() {
            *known = views;
        }
        *self.listed.write().unwrap_or_else(|e| e.into_inner()) = version;
        Ok(version)
    }

    /// True when `name` was a view at the last refresh.
    pub fn is_view(&self, name: &TableName) -> bool {
        self.views
            .read()
            .is_ok_and(|v| v.contains(&name.to_string()))
    }

    fn cached_schemas(&self) -> Vec<String> {
        self.names
            .read()
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl CatalogProvider for WarehouseCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        let mut names = self.cached_schemas();
        if !self.temp.names().is_empty() {
            names.push(TEMP_SCHEMA.to_string());
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return Some(Arc::new(SystemSchema::new(
                self.store.clone(),
                self.access.clone(),
            )));
        }
        if name == TEMP_SCHEMA {
            return Some(Arc::new(TempSchema(self.temp.clone())));
        }
        self.cached_schemas().iter().any(|s| s == name).then(|| {
            Arc::new(WarehouseSchema {
                store: self.store.clone(),
                schema: name.to_string(),
                names: self.names.clone(),
                access: self.access.clone(),
                policies: self.policies.clone(),
                parse: self.parse,
                published: self.published.clone(),
            }) as Arc<dyn SchemaProvider>
        })
    }
}

/// One namespace of the warehouse.
#[derive(Debug)]
struct WarehouseSchema {
    store: Store,
    schema: String,
    names: NameCache,
    access: Gate,
    policies: PolicyGate,
    parse: ExprParser,
    published: PublishedGate,
}

fn is_published(gate: &PublishedGate, name: &TableName) -> bool {
    gate.read().is_ok_and(|p| p.contains_key(&name.to_string()))
}

fn unreadable(access: &Gate, published: &PublishedGate, name: &TableName) -> Error {
    if !is_published(published, name) {
        return Error::TableNotFound {
            table: name.to_string(),
        };
    }
    Error::Denied {
        user: access
            .read()
            .map(|a| a.user().to_string())
            .unwrap_or_default(),
        action: format!(
            "read feature group {name} (needs SELECT; it is published: \
             REQUEST ACCESS ON FEATURE GROUP {name} REASON '...' asks its owner)"
        ),
    }
}

fn may_read(gate: &Gate, name: &TableName) -> bool {
    gate.read().is_ok_and(|a| a.may(Privilege::Select, name))
}

fn policy_of(gate: &PolicyGate, name: &TableName) -> Option<Arc<TablePolicy>> {
    gate.read()
        .ok()
        .and_then(|p| p.of(name))
        .filter(|p| !p.is_empty())
}

fn governed(
    gate: &PolicyGate,
    parse: ExprParser,
    name: &TableName,
    provider: Arc<dyn TableProvider>,
) -> Arc<dyn TableProvider> {
    match policy_of(gate, name) {
        Some(policy) => Arc::new(GovernedTable::new(
            &name.to_string(),
            provider,
            policy,
            parse,
        )),
        None => provider,
    }
}

#[async_trait]
impl SchemaProvider for WarehouseSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let names = self
            .names
            .read()
            .ok()
            .and_then(|n| n.get(&self.schema).cloned())
            .unwrap_or_default();
        names.into_iter().filter(|t| self.readable(t)).collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        // The one gate of reads: what the principal may not read is not there.
        let base = name.split_once('$').map_or(name, |(base, _)| base);
        if !self.readable(base) {
            return self.published_but_unreadable(base);
        }
        if let Some(split) = MetadataTable::split(name) {
            let (base, kind) = split?;
            self.may_read_metadata(base)?;
            let Some(table) = self
                .store
                .warehouse()
                .try_load_table(&self.schema, base)
                .await?
            else {
                return Ok(None);
            };
            return Ok(Some(Arc::new(kind.build(&table).await?)));
        }
        let Some(table) = self
            .store
            .warehouse()
            .try_load_table(&self.schema, name)
            .await?
        else {
            return self.view(name).await;
        };
        let qualified = format!("{}.{name}", self.schema);
        let pending = self.store.streams().pending_for(&qualified, &table)?;
        let provider = Arc::new(IcebergTable::current(qualified, table)?.with_pending(pending));
        let name = TableName::new(self.schema.clone(), name)?;
        Ok(Some(governed(&self.policies, self.parse, &name, provider)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|t| t == name)
    }
}

impl WarehouseSchema {
    fn readable(&self, table: &str) -> bool {
        TableName::new(self.schema.clone(), table).is_ok_and(|t| may_read(&self.access, &t))
    }

    /// A table the principal may not read does not exist for them, unless
    /// it is a published feature group: then reading it is denied, saying
    /// how to ask for access.
    fn published_but_unreadable(&self, table: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let Ok(name) = TableName::new(self.schema.clone(), table) else {
            return Ok(None);
        };
        match unreadable(&self.access, &self.published, &name) {
            Error::TableNotFound { .. } => Ok(None),
            denied => Err(denied.into()),
        }
    }

    /// A table's metadata tables (`$files`, `$snapshots`, ...) hold values and
    /// counts of every row: under a row filter or a mask only those who may
    /// manage the table (and so change its policy) read them.
    fn may_read_metadata(&self, table: &str) -> DFResult<()> {
        let name = TableName::new(self.schema.clone(), table)?;
        if policy_of(&self.policies, &name).is_none() {
            return Ok(());
        }
        let access = self
            .access
            .read()
            .map_err(|_| crate::error::Error::Internal("the session's access poisoned".into()))?;
        if access.may_manage(&Securable::Table(name.clone())) {
            return Ok(());
        }
        Err(crate::error::Error::Denied {
            user: access.user().to_string(),
            action: format!(
                "read the metadata tables of {name}: it has a row filter or column masks"
            ),
        }
        .into())
    }

    /// The view `name` of this schema, as the catalog shows it.
    async fn view(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let Ok(qualified) = TableName::new(self.schema.clone(), name) else {
            return Ok(None);
        };
        let Some(view) = self.store.warehouse().views().load(&qualified).await? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(ViewTable::new(&view)?)))
    }
}
