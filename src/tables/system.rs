//! `system.*`: the state of this pitlake process, as tables.
//!
//! - `system.ingest_status`: per stream, records acknowledged and committed,
//!   the lag (rows not yet in Iceberg, age of the oldest), commit latency.
//! - `system.online_status`: per loaded online group, entities and memory.
//! - `system.audit_log`: who did what (`access::audit`); admins read every
//!   event, other users their own.
//! - `system.access_requests`, `system.subscriptions`: requests for access to
//!   published feature groups, and the approved ones whose grant stands
//!   (`access::sharing`), as far as the principal may see them.

use std::any::Any;
use std::sync::{Arc, RwLock};

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result as DFResult;

use crate::access::{Access, Privilege};
use crate::error::{Error, Result};
use crate::shared::TableName;
use crate::store::Store;

pub use crate::shared::SYSTEM_SCHEMA;

const TABLES: [&str; 5] = [
    "ingest_status",
    "online_status",
    "audit_log",
    "access_requests",
    "subscriptions",
];

#[derive(Debug)]
pub struct SystemSchema {
    store: Store,
    /// What the session's principal may do (who they are, for the audit log).
    access: Arc<RwLock<Access>>,
}

impl SystemSchema {
    pub fn new(store: Store, access: Arc<RwLock<Access>>) -> Self {
        SystemSchema { store, access }
    }

    /// The rows of `batch` about tables the principal may read (its
    /// `table_name` column holds `schema.table`): a table they may not read
    /// does not exist for them here either.
    fn readable_rows(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let access = self
            .access
            .read()
            .map_err(|_| Error::Internal("the session's access poisoned".into()))?;
        if access.is_admin() {
            return Ok(batch);
        }
        let names = batch
            .column_by_name("table_name")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::Internal("a system table without table_name".into()))?;
        let readable: BooleanArray = names
            .iter()
            .map(|name| {
                let table = name
                    .and_then(|n| n.split_once('.'))
                    .and_then(|(schema, table)| TableName::new(schema, table).ok());
                Some(table.is_some_and(|t| access.may(Privilege::Select, &t)))
            })
            .collect();
        arrow::compute::filter_record_batch(&batch, &readable)
            .map_err(Error::arrow("the rows of a system table"))
    }

    /// A copy of what the principal may do.
    fn access(&self) -> Result<Access> {
        self.access
            .read()
            .map(|a| a.clone())
            .map_err(|_| Error::Internal("the session's access poisoned".into()))
    }

    /// The audit log as the principal may read it.
    async fn audit_log(&self) -> Result<RecordBatch> {
        let (admin, user) = {
            let access = self
                .access
                .read()
                .map_err(|_| Error::Internal("the session's access poisoned".into()))?;
            (access.is_admin(), access.user().to_string())
        };
        let only = (!admin).then_some(user.as_str());
        self.store.audit().read(only).await
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let batch = match name {
            "ingest_status" => self.readable_rows(self.store.streams().status()?)?,
            "online_status" => self.readable_rows(online_status(&self.store)?)?,
            "audit_log" => self.audit_log().await?,
            "access_requests" => {
                let access = self.access()?;
                self.store.sharing().requests_table(&access).await?
            }
            "subscriptions" => {
                let access = self.access()?;
                self.store.sharing().subscriptions_table(&access).await?
            }
            _ => return Ok(None),
        };
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

fn online_status(store: &Store) -> Result<RecordBatch> {
    let store = store.online();
    let mut names = Vec::new();
    let mut entities = Vec::new();
    let mut bytes = Vec::new();
    for name in store.loaded_names() {
        if let Some(group) = store.loaded(&name) {
            let (n, b) = group.stats();
            names.push(name);
            entities.push(n as u64);
            bytes.push(b as u64);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("entities", DataType::UInt64, false),
        Field::new("memory_bytes", DataType::UInt64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(UInt64Array::from(entities)),
        Arc::new(UInt64Array::from(bytes)),
    ];
    RecordBatch::try_new(schema, columns).map_err(Error::arrow("building a system table"))
}
