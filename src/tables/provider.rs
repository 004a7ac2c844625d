//! The warehouse as a DataFusion catalog: schemas are Iceberg namespaces,
//! tables are loaded from the catalog database at each statement.
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

use super::metadata_tables::MetadataTable;
use super::system::{SYSTEM_SCHEMA, SystemSchema};
use super::table::IcebergTable;
use crate::catalog::CatalogVersion;
use crate::error::Result;
use crate::store::Store;

/// Table names per schema, as of the last refresh.
type NameCache = Arc<RwLock<BTreeMap<String, Vec<String>>>>;

/// The warehouse seen as one DataFusion catalog.
#[derive(Debug, Clone)]
pub struct WarehouseCatalog {
    store: Store,
    names: NameCache,
    /// The catalog's version `names` were listed at.
    listed: Arc<RwLock<Option<CatalogVersion>>>,
}

impl WarehouseCatalog {
    pub fn new(store: Store) -> Self {
        WarehouseCatalog {
            store,
            names: NameCache::default(),
            listed: Arc::default(),
        }
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
        for schema in self.store.warehouse().list_schemas().await? {
            let tables = self
                .store
                .warehouse()
                .list_tables(&schema)
                .await
                .unwrap_or_default();
            fresh.insert(schema, tables);
        }
        if let Ok(mut names) = self.names.write() {
            *names = fresh;
        }
        *self.listed.write().unwrap_or_else(|e| e.into_inner()) = version;
        Ok(version)
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
        self.cached_schemas()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return Some(Arc::new(SystemSchema::new(self.store.clone())));
        }
        self.cached_schemas().iter().any(|s| s == name).then(|| {
            Arc::new(WarehouseSchema {
                store: self.store.clone(),
                schema: name.to_string(),
                names: self.names.clone(),
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
}

#[async_trait]
impl SchemaProvider for WarehouseSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.names
            .read()
            .ok()
            .and_then(|n| n.get(&self.schema).cloned())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if let Some(split) = MetadataTable::split(name) {
            let (base, kind) = split?;
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
            return Ok(None);
        };
        let qualified = format!("{}.{name}", self.schema);
        let pending = self.store.streams().pending_for(&qualified, &table);
        Ok(Some(Arc::new(
            IcebergTable::current(qualified, table)?.with_pending(pending),
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|t| t == name)
    }
}
