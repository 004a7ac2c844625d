//! A view as DataFusion's catalog shows it: its name, columns and definition
//! for `information_schema` and `SHOW COLUMNS`. Queries never scan it: the
//! session replaces a view's name with its query before planning (see
//! `planning::views`), so a scan that reaches it is a bug.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session as DFSession;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::Expr;

use crate::catalog::View;
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct ViewTable {
    name: String,
    schema: SchemaRef,
    sql: String,
}

impl ViewTable {
    pub fn new(view: &View) -> Result<Self> {
        let schema = iceberg::arrow::schema_to_arrow_schema(&view.schema)
            .map_err(Error::iceberg(format!("columns of view {}", view.name)))?;
        Ok(ViewTable {
            name: view.name.to_string(),
            schema: Arc::new(schema),
            sql: view.sql.clone(),
        })
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.sql)
    }

    async fn scan(
        &self,
        _state: &dyn DFSession,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal(format!(
            "view {} reached the planner unexpanded",
            self.name
        )))
    }
}
