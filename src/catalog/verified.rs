//! The SQL catalog, with every change checked against what it recorded.
//!
//! iceberg-catalog-sql 0.10.1 runs each change in a SQLite transaction but
//! ignores a failed COMMIT (`let _ = tx.commit()`): on a full disk an INSERT
//! reported success while the catalog kept pointing at the previous metadata,
//! so an acknowledged write was lost. Every change made through this wrapper
//! reads the catalog back and fails, naming the cause, unless the change is
//! really there; a metadata file written for a commit that did not land is
//! deleted.

use std::collections::HashMap;

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation,
    TableIdent,
};
use iceberg_catalog_sql::SqlCatalog;

/// [`SqlCatalog`] whose writes are verified (see the module docs).
#[derive(Debug)]
pub struct VerifiedCatalog {
    inner: SqlCatalog,
}

impl VerifiedCatalog {
    pub fn new(inner: SqlCatalog) -> Self {
        VerifiedCatalog { inner }
    }
}

/// The error of a change the catalog database did not keep.
fn not_recorded(what: String) -> Error {
    Error::new(
        ErrorKind::Unexpected,
        format!(
            "{what}: the catalog database did not record it (its transaction failed to commit; \
             is the warehouse's disk full or read-only?)"
        ),
    )
}

#[async_trait]
impl Catalog for VerifiedCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        let created = self.inner.create_namespace(namespace, properties).await?;
        if !self.inner.namespace_exists(namespace).await? {
            return Err(not_recorded(format!(
                "creating schema {}",
                namespace.to_url_string()
            )));
        }
        Ok(created)
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await?;
        if self.inner.namespace_exists(namespace).await? {
            return Err(not_recorded(format!(
                "dropping schema {}",
                namespace.to_url_string()
            )));
        }
        Ok(())
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let name = creation.name.clone();
        let created = self.inner.create_table(namespace, creation).await?;
        let ident = TableIdent::new(namespace.clone(), name);
        let recorded = match self.inner.load_table(&ident).await {
            Ok(loaded) => loaded.metadata_location() == created.metadata_location(),
            Err(e) if e.kind() == ErrorKind::TableNotFound => false,
            Err(e) => return Err(e),
        };
        if !recorded {
            delete_metadata(&created).await;
            return Err(not_recorded(format!("creating table {ident}")));
        }
        Ok(created)
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        self.inner.load_table(table).await
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await?;
        if self.inner.table_exists(table).await? {
            return Err(not_recorded(format!("dropping table {table}")));
        }
        Ok(())
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await?;
        if !self.inner.table_exists(dest).await? {
            return Err(not_recorded(format!("renaming table {src} to {dest}")));
        }
        Ok(())
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let ident = commit.identifier().clone();
        let staged = self.inner.update_table(commit).await?;
        let location = staged.metadata_location_result()?.to_string();
        let current = self.inner.load_table(&ident).await?;
        // Ours is current, or a later commit (made on top of ours) is.
        let recorded = current.metadata_location() == Some(location.as_str())
            || current
                .metadata()
                .metadata_log()
                .iter()
                .any(|entry| entry.metadata_file == location);
        if !recorded {
            delete_metadata(&staged).await;
            return Err(not_recorded(format!("committing to table {ident}")));
        }
        Ok(staged)
    }
}

/// Best effort: a metadata file no catalog row points to is never read.
async fn delete_metadata(table: &Table) {
    if let Some(location) = table.metadata_location() {
        let _ = table.file_io().delete(location).await;
    }
}
