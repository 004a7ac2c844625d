//! The warehouse as a DataFusion catalog: schemas are Iceberg namespaces,
//! tables are loaded from the catalog database at each statement.
//!
//! DataFusion asks for table *names* synchronously (`SHOW TABLES`,
//! `information_schema`), so the name lists are cached and refreshed before
//! every statement; tables themselves are always loaded fresh.

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
use super::temporary::{TempSchema, TempTables};
use crate::error::Result;
use crate::shared::TEMP_SCHEMA;
use crate::store::Store;

/// Table names per schema, as of the last refresh.
type NameCache = Arc<RwLock<BTreeMap<String, Vec<String>>>>;

/// The warehouse seen as one DataFusion catalog.
#[derive(Debug, Clone)]
pub struct WarehouseCatalog {
    store: Store,
    names: NameCache,
    temp: TempTables,
}

impl WarehouseCatalog {
    /// The warehouse, plus one session's temporary tables as schema `temp`.
    pub fn new(store: Store, temp: TempTables) -> Self {
        WarehouseCatalog {
            store,
            names: NameCache::default(),
            temp,
        }
    }

    /// Re-reads schema and table names, so tables created by other processes
    /// (another pitlake, pyiceberg) are listed.
    pub async fn refresh(&self) -> Result<()> {
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
        Ok(())
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
            return Some(Arc::new(SystemSchema::new(self.store.clone())));
        }
        if name == TEMP_SCHEMA {
            return Some(Arc::new(TempSchema(self.temp.clone())));
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
