//! `online.<schema>.<group>`: online feature groups as SQL tables whose key
//! predicates become point lookups.
//!
//! ```text
//!  SELECT ... FROM online.s.g WHERE k1 = 'a' AND k2 IN (1, 2)
//!    └─► OnlineLookupExec: group=s.g, keys=2   (entities (a,1), (a,2), in that order)
//! ```
//!
//! When every key column is pinned by `=` / `IN` / `OR`ed equalities of
//! literals, those predicates are answered exactly by lookups: one row per
//! requested entity, in request order, with NULL features for entities
//! without a (fresh enough) value. Otherwise the group is scanned and
//! DataFusion filters the rows.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use super::governed::GovernedTable;
use super::provider::WarehouseCatalog;
use crate::catalog::TableName;
use crate::error::Error;
use crate::online::OnlineGroup;
use crate::storage::{as_declared, without_nested_ids};
use crate::store::Store;

/// Name of the catalog holding the online groups.
pub const ONLINE_CATALOG: &str = "online";

/// Most entities one SQL lookup may ask for (the product of the key lists).
const MAX_LOOKUP_KEYS: usize = 1_000_000;

/// The `online` catalog: the warehouse's schemas, holding its online groups.
#[derive(Debug)]
pub struct OnlineCatalog {
    store: Store,
    names: Arc<WarehouseCatalog>,
}

impl OnlineCatalog {
    pub fn new(store: Store, names: Arc<WarehouseCatalog>) -> Self {
        OnlineCatalog { store, names }
    }
}

impl CatalogProvider for OnlineCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.names.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let inner = self.names.schema(name)?;
        Some(Arc::new(OnlineSchema {
            store: self.store.clone(),
            schema: name.to_string(),
            inner,
            gate: self.names.clone(),
        }))
    }
}

#[derive(Debug)]
struct OnlineSchema {
    store: Store,
    schema: String,
    inner: Arc<dyn SchemaProvider>,
    /// Who may read which group: the warehouse's gate.
    gate: Arc<WarehouseCatalog>,
}

#[async_trait]
impl SchemaProvider for OnlineSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let loaded = self.store.online().loaded_names();
        let prefix = format!("{}.", self.schema);
        loaded
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
            .filter(|t| {
                TableName::new(self.schema.clone(), t.clone()).is_ok_and(|t| self.gate.may_read(&t))
            })
            .collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let Ok(table_name) = TableName::new(self.schema.clone(), name) else {
            return Ok(None);
        };
        if !self.gate.may_read(&table_name) {
            return match self.gate.unreadable(&table_name) {
                crate::error::Error::TableNotFound { .. } => Ok(None),
                denied => Err(denied.into()),
            };
        }
        if !self.inner.table_exist(name)
            && self
                .store
                .warehouse()
                .try_load_table(&self.schema, name)
                .await?
                .is_none()
        {
            return Ok(None);
        }
        let group = self.store.online().group(&table_name).await?;
        let table = Arc::new(OnlineTable::new(group, self.store.clone()));
        Ok(Some(self.gate.governed(&table_name, table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// Whether `provider` is an online group's table: one that finds its data
/// when it runs, not when it is planned (so its plans may be kept).
pub fn is_online_table(provider: &dyn TableProvider) -> bool {
    let any = provider.as_any();
    any.is::<OnlineTable>()
        || any
            .downcast_ref::<GovernedTable>()
            .is_some_and(|g| g.inner().as_any().is::<OnlineTable>())
}

/// One online group as a table.
#[derive(Debug)]
struct OnlineTable {
    /// The group as planned: its columns and keys.
    group: Arc<OnlineGroup>,
    /// Where a scan finds the group as it is when it runs.
    store: Store,
    /// The group's columns; non-key columns nullable (missing entities).
    schema: SchemaRef,
}

impl OnlineTable {
    fn new(group: Arc<OnlineGroup>, store: Store) -> Self {
        let keys = group.key_columns();
        let fields: Vec<Field> = group
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| f.as_ref().clone().with_nullable(!keys.contains(&i)))
            .collect();
        OnlineTable {
            schema: Arc::new(without_nested_ids(&Schema::new(fields))),
            group,
            store,
        }
    }

    /// Per key column, the values asked for, when the filters pin every key.
    fn requested(&self, filters: &[&Expr]) -> Option<(Vec<Vec<ScalarValue>>, Vec<bool>)> {
        let names: Vec<&str> = self
            .group
            .key_columns()
            .iter()
            .map(|&i| self.schema.field(i).name().as_str())
            .collect();
        let mut values: Vec<Option<Vec<ScalarValue>>> = vec![None; names.len()];
        let mut used = vec![false; filters.len()];
        for (f, filter) in filters.iter().enumerate() {
            let Some((column, list)) = key_values(filter) else {
                continue;
            };
            let Some(k) = names.iter().position(|n| *n == column) else {
                continue;
            };
            if values[k].is_some() {
                // Two predicates on one key: let DataFusion combine them.
                continue;
            }
            // A value asked for twice (`k IN ($1, 9)` bound to 9) is one
            // entity, answered once.
            let mut seen = std::collections::HashSet::new();
            values[k] = Some(
                list.into_iter()
                    .filter(|v| seen.insert(v.clone()))
                    .collect(),
            );
            used[f] = true;
        }
        let values: Option<Vec<Vec<ScalarValue>>> = values.into_iter().collect();
        values.map(|v| (v, used))
    }
}

/// `column = literal`, `column IN (literals)` or an `OR` of equalities on one column.
fn key_values(expr: &Expr) -> Option<(String, Vec<ScalarValue>)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c))
                if !v.is_null() =>
            {
                Some((c.name.clone(), vec![v.clone()]))
            }
            _ => None,
        },
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (a, mut va) = key_values(left)?;
            let (b, vb) = key_values(right)?;
            (a == b).then(|| {
                va.extend(vb);
                (a, va)
            })
        }
        Expr::InList(list) if !list.negated => {
            let Expr::Column(c) = list.expr.as_ref() else {
                return None;
            };
            let values = list
                .list
                .iter()
                .map(|e| match e {
                    Expr::Literal(v, _) if !v.is_null() => Some(v.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some((c.name.clone(), values))
        }
        _ => None,
    }
}

/// Every combination of the key lists, first key varying slowest.
fn combinations(lists: &[Vec<ScalarValue>]) -> DFResult<Vec<ArrayRef>> {
    let total = lists
        .iter()
        .map(Vec::len)
        .try_fold(1usize, |a, n| a.checked_mul(n));
    match total {
        Some(n) if n <= MAX_LOOKUP_KEYS => {}
        _ => {
            return Err(DataFusionError::External(Box::new(Error::Invalid(
                format!("an online lookup may ask for at most {MAX_LOOKUP_KEYS} entities"),
            ))));
        }
    }
    let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::new(); lists.len()];
    let mut index = vec![0usize; lists.len()];
    if lists.iter().any(Vec::is_empty) {
        return lists
            .iter()
            .map(|l| ScalarValue::iter_to_array(l.iter().cloned()))
            .collect();
    }
    'outer: loop {
        for (k, list) in lists.iter().enumerate() {
            columns[k].push(list[index[k]].clone());
        }
        for k in (0..lists.len()).rev() {
            index[k] += 1;
            if index[k] < lists[k].len() {
                continue 'outer;
            }
            index[k] = 0;
        }
        break;
    }
    columns
        .into_iter()
        .map(ScalarValue::iter_to_array)
        .collect()
}

#[async_trait]
impl TableProvider for OnlineTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(match self.requested(filters) {
            Some((_, used)) => used
                .into_iter()
                .map(|u| {
                    if u {
                        TableProviderFilterPushDown::Exact
                    } else {
                        TableProviderFilterPushDown::Inexact
                    }
                })
                .collect(),
            None => vec![TableProviderFilterPushDown::Inexact; filters.len()],
        })
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let filters: Vec<&Expr> = filters.iter().collect();
        let (keys, unused) = match self.requested(&filters) {
            Some((lists, used)) => {
                let unused: Vec<Expr> = filters
                    .iter()
                    .zip(used)
                    .filter(|(_, used)| !used)
                    .map(|(f, _)| unqualified((*f).clone()))
                    .collect::<DFResult<_>>()?;
                (Some(combinations(&lists)?), unused)
            }
            None => (None, Vec::new()),
        };
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        // A kept plan runs after the store may have rebuilt the group (a
        // commit it caught up with): the group of that name now, as long
        // as it has the planned columns.
        let group = match self.store.online().loaded(self.group.name()) {
            Some(now) if now.schema() == self.group.schema() => now,
            _ => self.group.clone(),
        };
        // DataFusion may have been told a filter was answered exactly in a
        // pass that saw it alone (`k IN (2, 3)` after `k = 1` was pushed in
        // an earlier one): filters the lookup does not answer are applied
        // to its rows here, so none is lost. Those DataFusion also applies
        // above cost a second look at the few rows of a lookup.
        let Some(predicate) = conjunction(unused) else {
            let schema = Arc::new(self.schema.project(&projection)?);
            return Ok(Arc::new(OnlineLookupExec::new(
                group, keys, projection, schema,
            )));
        };
        let every: Vec<usize> = (0..self.schema.fields().len()).collect();
        let lookup = OnlineLookupExec::new(group, keys, every, self.schema.clone());
        let columns = DFSchema::try_from(self.schema.as_ref().clone())?;
        let predicate = state.create_physical_expr(predicate, &columns)?;
        let filtered = FilterExecBuilder::new(predicate, Arc::new(lookup))
            .apply_projection(Some(projection))?
            .build()?;
        Ok(Arc::new(filtered))
    }
}

/// `expr` with its columns named without their table: as the table's own
/// schema names them.
fn unqualified(expr: Expr) -> DFResult<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    expr.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(
            datafusion::common::Column::new_unqualified(c.name),
        ))),
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// Answers a lookup (or lists the group) from the online store.
#[derive(Debug)]
pub struct OnlineLookupExec {
    group: Arc<OnlineGroup>,
    /// Entities asked for, one array per key column; `None` lists every entity.
    keys: Option<Vec<ArrayRef>>,
    projection: Vec<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl OnlineLookupExec {
    pub fn new(
        group: Arc<OnlineGroup>,
        keys: Option<Vec<ArrayRef>>,
        projection: Vec<usize>,
        schema: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        OnlineLookupExec {
            group,
            keys,
            projection,
            schema,
            properties,
        }
    }
}

impl DisplayAs for OnlineLookupExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.keys {
            Some(keys) => write!(
                f,
                "OnlineLookupExec: group={}, keys={}",
                self.group.name(),
                keys.first().map_or(0, |k| k.len())
            ),
            None => write!(
                f,
                "OnlineLookupExec: group={}, all entities",
                self.group.name()
            ),
        }
    }
}

impl ExecutionPlan for OnlineLookupExec {
    fn name(&self) -> &str {
        "OnlineLookupExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let result = match &self.keys {
            Some(keys) => self.group.lookup(keys, &self.projection),
            None => self.group.scan(&self.projection),
        }
        // As the table declares it: non-key columns nullable, nested fields
        // without their field ids.
        .and_then(|batch| as_declared(batch, &self.schema))
        .map_err(|e| DataFusionError::External(Box::new(e)));
        let stream = futures::stream::once(async move { result });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}
