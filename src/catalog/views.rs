//! Views: a name for a query, stored in the catalog as the Iceberg view spec
//! and the SQL-catalog layout have it — a view metadata file under
//! `<schema>/<view>/metadata/`, and a row of `iceberg_tables` whose
//! `iceberg_type` is `VIEW` (iceberg-rust's SQL catalog reads only `TABLE`
//! rows, so it neither lists nor loads them; names are still unique across
//! tables and views, as the row's key is the same).
//!
//! The stored SQL is the query with every table name qualified by the schema
//! it was created in, so the view means the same in every session.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use iceberg::NamespaceIdent;
use iceberg::spec::{Schema, ViewMetadata, ViewMetadataBuilder, ViewRepresentation};
use iceberg::{ViewCreation, spec::ViewRepresentations};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::warehouse::CATALOG_NAME;
use crate::error::{Error, Result};
use crate::shared::{TableName, warehouse_path};

const DIALECT: &str = "pitlake";

/// A stored view.
#[derive(Debug, Clone)]
pub struct View {
    pub name: TableName,
    /// The defining query, table names qualified.
    pub sql: String,
    /// Its columns as stored (types Iceberg cannot hold are strings here).
    pub schema: Schema,
    pub comment: Option<String>,
}

/// The views of one warehouse.
#[derive(Debug, Clone)]
pub struct Views {
    pool: SqlitePool,
    root: PathBuf,
}

fn db_error(what: String) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::unavailable(what)(e)
}

/// A pool of connections to the catalog database `db`, for pitlake's own
/// rows beside the Iceberg catalog's (views, principals).
pub async fn open_db(db: &Path) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite:{}", db.display()))
        .map_err(db_error(format!("catalog {}", db.display())))?;
    sqlite_pool(options, &format!("the catalog {}", db.display())).await
}

/// A pool of pitlake's SQLite files (the catalog database, the audit log):
/// two connections, a 10 s busy wait.
pub async fn sqlite_pool(options: SqliteConnectOptions, what: &str) -> Result<SqlitePool> {
    let options = options.busy_timeout(Duration::from_secs(10));
    // No idle reaping or lifetime: sqlx's maintenance task for them spun a
    // core after a write failed on a full disk, and kept `pitlake sql` alive.
    SqlitePoolOptions::new()
        .max_connections(2)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(db_error(format!("cannot open {what}")))
}

impl Views {
    /// Views of the catalog database behind `pool` (the SQL catalog made
    /// its tables).
    pub fn new(pool: SqlitePool, root: &Path) -> Self {
        Views {
            pool,
            root: root.to_path_buf(),
        }
    }

    /// The kind of object named `name`: "view", "table", or none.
    pub async fn kind_of(&self, name: &TableName) -> Result<Option<&'static str>> {
        let row = sqlx::query(
            "SELECT iceberg_type FROM iceberg_tables
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        )
        .bind(CATALOG_NAME)
        .bind(&name.schema)
        .bind(&name.table)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error(format!("cannot read the catalog for {name}")))?;
        Ok(row.map(
            |r| match r.try_get::<Option<String>, _>(0).ok().flatten().as_deref() {
                Some("VIEW") => "view",
                _ => "table",
            },
        ))
    }

    /// Names of the views of `schema`, sorted.
    pub async fn list(&self, schema: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT table_name FROM iceberg_tables
             WHERE catalog_name = ? AND table_namespace = ? AND iceberg_type = 'VIEW'
             ORDER BY table_name",
        )
        .bind(CATALOG_NAME)
        .bind(schema)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error(format!("cannot list the views of {schema}")))?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>(0)
                    .map_err(db_error(format!("views of {schema}")))
            })
            .collect()
    }

    /// The view `name`, or `None` when there is no view of that name.
    pub async fn load(&self, name: &TableName) -> Result<Option<View>> {
        let Some(location) = self.metadata_location(name).await? else {
            return Ok(None);
        };
        let path = self.local_path(&location, name)?;
        let text = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let metadata: ViewMetadata = serde_json::from_slice(&text).map_err(|e| {
            Error::Corrupt(format!(
                "view {name}: metadata {} does not parse: {e}",
                path.display()
            ))
        })?;
        let version = metadata.current_version();
        let sql = version
            .representations()
            .iter()
            .map(|r| match r {
                ViewRepresentation::Sql(sql) => sql,
            })
            .find(|r| r.dialect == DIALECT)
            .map(|r| r.sql.clone())
            .ok_or_else(|| {
                Error::NotSupported(format!(
                    "view {name} has no SQL in pitlake's dialect (made by another engine)"
                ))
            })?;
        Ok(Some(View {
            name: name.clone(),
            sql,
            schema: metadata.current_schema().as_ref().clone(),
            comment: metadata.properties().get("comment").cloned(),
        }))
    }

    /// Stores a view. `replace` swaps the definition of an existing view
    /// (never a table); otherwise an existing name is an error.
    pub async fn create(
        &self,
        name: &TableName,
        sql: &str,
        schema: Schema,
        comment: Option<&str>,
        replace: bool,
    ) -> Result<()> {
        let previous = match self.kind_of(name).await? {
            Some("view") if replace => self.metadata_location(name).await?,
            Some(kind) => {
                return Err(Error::AlreadyExists {
                    kind,
                    name: name.to_string(),
                });
            }
            None => None,
        };
        let dir = warehouse_path(&self.root, &[&name.schema, &name.table, "metadata"])?;
        let representations: ViewRepresentations = serde_json::from_value(serde_json::json!([
            {"type": "sql", "sql": sql, "dialect": DIALECT}
        ]))
        .map_err(|e| Error::Internal(format!("view representation: {e}")))?;
        let mut properties = HashMap::new();
        if let Some(comment) = comment {
            properties.insert("comment".to_string(), comment.to_string());
        }
        let creation = ViewCreation::builder()
            .name(name.table.clone())
            .location(format!("file://{}", dir.parent().unwrap_or(&dir).display()))
            .representations(representations)
            .schema(schema)
            .properties(properties)
            .default_namespace(NamespaceIdent::new(name.schema.clone()))
            .default_catalog(Some(CATALOG_NAME.to_string()))
            .summary(HashMap::from([(
                "engine-name".to_string(),
                "pitlake".to_string(),
            )]))
            .build();
        let metadata = ViewMetadataBuilder::from_view_creation(creation)
            .and_then(ViewMetadataBuilder::build)
            .map_err(Error::iceberg(format!("view {name}")))?
            .metadata;
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let file = dir.join(format!("{}.metadata.json", uuid::Uuid::new_v4()));
        let text = serde_json::to_vec_pretty(&metadata)
            .map_err(|e| Error::Internal(format!("view {name} metadata: {e}")))?;
        std::fs::write(&file, text).map_err(|source| Error::Io {
            path: file.display().to_string(),
            source,
        })?;
        let location = format!("file://{}", file.display());
        let stored = match &previous {
            Some(old) => sqlx::query(
                "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?
                 WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?
                   AND iceberg_type = 'VIEW' AND metadata_location = ?",
            )
            .bind(&location)
            .bind(old)
            .bind(CATALOG_NAME)
            .bind(&name.schema)
            .bind(&name.table)
            .bind(old)
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected() == 1),
            None => sqlx::query(
                "INSERT INTO iceberg_tables
                 (catalog_name, table_namespace, table_name, metadata_location, iceberg_type)
                 VALUES (?, ?, ?, ?, 'VIEW')",
            )
            .bind(CATALOG_NAME)
            .bind(&name.schema)
            .bind(&name.table)
            .bind(&location)
            .execute(&self.pool)
            .await
            .map(|_| true),
        };
        match stored {
            Ok(true) => {
                if let Some(old) = previous
                    && let Ok(old) = self.local_path(&old, name)
                {
                    let _ = std::fs::remove_file(old);
                }
                Ok(())
            }
            // Another statement replaced the view meanwhile.
            Ok(false) => {
                let _ = std::fs::remove_file(&file);
                Err(Error::CommitConflict {
                    table: name.to_string(),
                    attempts: 1,
                })
            }
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                if is_unique_violation(&e) {
                    // Another statement took the name meanwhile.
                    let kind = self.kind_of(name).await?.unwrap_or("table");
                    return Err(Error::AlreadyExists {
                        kind,
                        name: name.to_string(),
                    });
                }
                Err(db_error(format!("cannot store view {name}"))(e))
            }
        }
    }

    /// Removes a view and its metadata; false when there is no such view.
    pub async fn drop_view(&self, name: &TableName) -> Result<bool> {
        let Some(location) = self.metadata_location(name).await? else {
            return Ok(false);
        };
        sqlx::query(
            "DELETE FROM iceberg_tables
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?
               AND iceberg_type = 'VIEW'",
        )
        .bind(CATALOG_NAME)
        .bind(&name.schema)
        .bind(&name.table)
        .execute(&self.pool)
        .await
        .map_err(db_error(format!("cannot drop view {name}")))?;
        if let Ok(path) = self.local_path(&location, name) {
            let _ = std::fs::remove_file(&path);
            // The view's folders, if nothing else is in them.
            if let Some(metadata) = path.parent() {
                let _ = std::fs::remove_dir(metadata);
                if let Some(view) = metadata.parent() {
                    let _ = std::fs::remove_dir(view);
                }
            }
        }
        Ok(true)
    }

    async fn metadata_location(&self, name: &TableName) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT metadata_location FROM iceberg_tables
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?
               AND iceberg_type = 'VIEW'",
        )
        .bind(CATALOG_NAME)
        .bind(&name.schema)
        .bind(&name.table)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error(format!("cannot read view {name}")))?;
        row.map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(db_error(format!("view {name}")))
    }

    /// The file a stored location names, which must lie inside the view's
    /// folder of this warehouse.
    fn local_path(&self, location: &str, name: &TableName) -> Result<PathBuf> {
        let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
        let dir = warehouse_path(&self.root, &[&name.schema, &name.table, "metadata"])?;
        let inside = path.parent() == Some(dir.as_path())
            && path
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.ends_with(".metadata.json") && !f.contains(".."));
        if !inside {
            return Err(Error::Corrupt(format!(
                "view {name}: its metadata location {location} is outside the view's folder"
            )));
        }
        Ok(path)
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
