//! `system.*`: the state of this pitlake process, as tables.
//!
//! - `system.ingest_status`: per stream, records acknowledged and committed,
//!   the lag (rows not yet in Iceberg, age of the oldest), commit latency.
//! - `system.online_status`: per loaded online group, entities and memory.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result as DFResult;

use crate::error::{Error, Result};
use crate::store::Store;

pub use crate::shared::SYSTEM_SCHEMA;

const TABLES: [&str; 2] = ["ingest_status", "online_status"];

#[derive(Debug)]
pub struct SystemSchema {
    store: Store,
}

impl SystemSchema {
    pub fn new(store: Store) -> Self {
        SystemSchema { store }
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
            "ingest_status" => self.store.streams().status()?,
            "online_status" => online_status(&self.store)?,
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
