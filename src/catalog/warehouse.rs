//! The warehouse: a folder of Iceberg tables plus the SQLite catalog that names
//! them, in the Iceberg SQL-catalog layout that pyiceberg's `SqlCatalog` reads.
//!
//! ```text
//! warehouse/
//!   catalog.db                      iceberg_tables, iceberg_namespace_properties
//!   <schema>/<table>/metadata/      NNNNN-<uuid>.metadata.json, manifests, manifest lists
//!   <schema>/<table>/data/          Parquet data files
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::io::LocalFsStorageFactory;
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, ErrorKind, NamespaceIdent, TableIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};

use super::verified::VerifiedCatalog;
use super::version::{CatalogVersion, VersionWatch};
use super::views::{Views, open_db};

use crate::error::{Error, Result};
use crate::shared::{NameKind, SYSTEM_SCHEMA, TEMP_SCHEMA, check_name};

/// Name under which pitlake registers its tables in the catalog database; other
/// engines open the same tables with this catalog name.
pub const CATALOG_NAME: &str = "pitlake";

/// File name of the SQLite catalog inside the warehouse folder.
pub const CATALOG_FILE: &str = "catalog.db";

/// Schema that always exists, used for unqualified names.
pub const DEFAULT_SCHEMA: &str = "default";

/// An opened warehouse: the catalog plus where it lives. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
    catalog: Arc<VerifiedCatalog>,
    views: Views,
    /// The catalog database, for pitlake's own rows beside the catalog's.
    db: sqlx::SqlitePool,
    version: Arc<VersionWatch>,
    /// Tables as last loaded, valid while the catalog keeps their version.
    loaded: Arc<std::sync::Mutex<LoadedTables>>,
}

/// Tables loaded at one catalog version (a missing table as `None`).
#[derive(Debug, Default)]
struct LoadedTables {
    version: Option<CatalogVersion>,
    tables: HashMap<(String, String), Option<Table>>,
}

/// Tables remembered at most; past that the memory starts afresh.
const LOADED_TABLES: usize = 1024;

impl Warehouse {
    /// True when `dir` holds a warehouse (its catalog file).
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        dir.as_ref().join(CATALOG_FILE).is_file()
    }

    /// Opens the warehouse in `dir`, which must exist already.
    pub async fn open_existing(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !Self::exists(dir) {
            let path = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            return Err(Error::WarehouseNotFound {
                path: path.display().to_string(),
                file: CATALOG_FILE,
            });
        }
        Self::open(dir).await
    }

    /// Opens (creating if needed) the warehouse in `dir`. A folder it
    /// creates is its owner's alone (mode 0700): other users of the host
    /// cannot reach the files inside, whatever their own modes.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = dir.as_ref();
        if !dir.is_dir() {
            let io = |source| Error::Io {
                path: dir.display().to_string(),
                source,
            };
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                // Made by another process meanwhile: theirs to have made.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                other => other.map_err(io)?,
            }
        }
        let root = dir.canonicalize().map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let db = root.join(CATALOG_FILE);
        let catalog = SqlCatalogBuilder::default()
            .with_storage_factory(Arc::new(LocalFsStorageFactory))
            .uri(format!("sqlite:{}?mode=rwc", db.display()))
            .warehouse_location(format!("file://{}", root.display()))
            .sql_bind_style(SqlBindStyle::QMark)
            .load(CATALOG_NAME, HashMap::new())
            .await
            .map_err(Error::iceberg(format!(
                "cannot open the catalog {}",
                db.display()
            )))?;
        let pool = open_db(&db).await?;
        let warehouse = Warehouse {
            views: Views::new(pool.clone(), &root),
            catalog: Arc::new(VerifiedCatalog::new(catalog)),
            db: pool,
            version: Arc::new(VersionWatch::new(root.join(CATALOG_FILE))),
            loaded: Arc::default(),
            root,
        };
        warehouse.ensure_schema(DEFAULT_SCHEMA).await?;
        Ok(warehouse)
    }

    /// The warehouse folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Iceberg catalog.
    pub fn catalog(&self) -> &Arc<VerifiedCatalog> {
        &self.catalog
    }

    /// The catalog database (principals live there too).
    pub fn db(&self) -> &sqlx::SqlitePool {
        &self.db
    }

    /// The views stored beside the tables.
    pub fn views(&self) -> &Views {
        &self.views
    }

    /// The catalog's version now (see [`CatalogVersion`]); `None` when it
    /// cannot tell, which callers take as a change.
    pub async fn version(&self) -> Option<CatalogVersion> {
        self.version.current().await
    }

    /// Creates a schema unless it exists.
    pub async fn ensure_schema(&self, schema: &str) -> Result<()> {
        if !self.schema_exists(schema).await? {
            self.create_schema(schema).await?;
        }
        Ok(())
    }

    /// Creates a schema; errors if it exists.
    pub async fn create_schema(&self, schema: &str) -> Result<()> {
        check_name(NameKind::Schema, schema)?;
        if schema == SYSTEM_SCHEMA || schema == TEMP_SCHEMA {
            return Err(Error::AlreadyExists {
                kind: "schema",
                name: format!("{schema} (it holds pitlake's system or temporary tables)"),
            });
        }
        let ns = NamespaceIdent::new(schema.to_string());
        match self.catalog.create_namespace(&ns, HashMap::new()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NamespaceAlreadyExists => Err(Error::AlreadyExists {
                kind: "schema",
                name: schema.to_string(),
            }),
            Err(e) => Err(Error::iceberg(format!("cannot create schema {schema}"))(e)),
        }
    }

    /// Drops an empty schema.
    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        if !self.schema_exists(schema).await? {
            return Err(Error::SchemaNotFound {
                schema: schema.to_string(),
            });
        }
        if !self.list_tables(schema).await?.is_empty() || !self.views.list(schema).await?.is_empty()
        {
            return Err(Error::Invalid(format!(
                "schema {schema} is not empty: drop its tables and views first"
            )));
        }
        let ns = NamespaceIdent::new(schema.to_string());
        self.catalog
            .drop_namespace(&ns)
            .await
            .map_err(Error::iceberg(format!("cannot drop schema {schema}")))
    }

    pub async fn schema_exists(&self, schema: &str) -> Result<bool> {
        let ns = NamespaceIdent::new(schema.to_string());
        self.catalog
            .namespace_exists(&ns)
            .await
            .map_err(Error::iceberg("cannot read the catalog"))
    }

    /// All schemas, sorted.
    pub async fn list_schemas(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .catalog
            .list_namespaces(None)
            .await
            .map_err(Error::iceberg("cannot list schemas"))?
            .iter()
            .map(|ns| ns.to_url_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Table names of a schema, sorted.
    pub async fn list_tables(&self, schema: &str) -> Result<Vec<String>> {
        let ns = NamespaceIdent::new(schema.to_string());
        match self.catalog.list_tables(&ns).await {
            Ok(tables) => {
                let mut names: Vec<String> = tables.into_iter().map(|t| t.name).collect();
                names.sort();
                Ok(names)
            }
            Err(e) if e.kind() == ErrorKind::NamespaceNotFound => Err(Error::SchemaNotFound {
                schema: schema.to_string(),
            }),
            Err(e) => Err(Error::iceberg(format!("cannot list tables of {schema}"))(e)),
        }
    }

    /// Loads a table's current metadata; `None` if there is no such table.
    /// While the catalog keeps its version the table is the one loaded
    /// before (the same metadata file), so only the first statement after
    /// a change reads it.
    pub async fn try_load_table(&self, schema: &str, table: &str) -> Result<Option<Table>> {
        let version = self.version().await;
        let key = (schema.to_string(), table.to_string());
        if let Some(version) = version {
            let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            if loaded.version == Some(version)
                && let Some(table) = loaded.tables.get(&key)
            {
                return Ok(table.clone());
            }
        }
        // Loaded after the version was read: at least as new as it.
        let fresh = self.load_uncached(schema, table).await?;
        if let Some(version) = version {
            let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            if loaded.version != Some(version) || loaded.tables.len() >= LOADED_TABLES {
                loaded.version = Some(version);
                loaded.tables.clear();
            }
            loaded.tables.insert(key, fresh.clone());
        }
        Ok(fresh)
    }

    async fn load_uncached(&self, schema: &str, table: &str) -> Result<Option<Table>> {
        let ident = TableIdent::new(NamespaceIdent::new(schema.to_string()), table.to_string());
        match self.catalog.load_table(&ident).await {
            Ok(t) => Ok(Some(t)),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::iceberg(format!(
                "cannot load table {schema}.{table}"
            ))(e)),
        }
    }

    /// Loads a table's current metadata, or says it does not exist.
    pub async fn load_table(&self, schema: &str, table: &str) -> Result<Table> {
        self.try_load_table(schema, table)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: format!("{schema}.{table}"),
            })
    }
}
