//! A table read under its row filter and column masks.
//!
//! The catalog hands out a [`GovernedTable`] in place of a table that has a
//! policy (see `access::policies`), so every read that names the table (plain
//! reads, time travel, both sides of an ASOF JOIN, `COPY ... TO`,
//! `INSERT ... SELECT`, views, prepared statements, the online catalog) scans
//! it through here:
//!
//! ```text
//! PolicyBarrierExec          no predicate of the reader's passes below it
//!   ProjectionExec           masked columns replaced by their mask
//!     FilterExec             the row filter, on the stored values
//!       the table's scan     with only the reader's predicates that cannot fail
//! ```
//!
//! Hidden rows must not exist for the reader, not even through an error: a
//! predicate of the reader's that can fail (`1 / (x - 5) > 0`) evaluated on a
//! hidden row would tell them something about it. So the scan takes only
//! comparisons of a bare column with constants (which prune files and row
//! groups and never fail), and the barrier keeps DataFusion's physical filter
//! pushdown from moving anything else below the filter. A predicate on a
//! masked column sees the masked value: it stays above the projection.
//!
//! Table statistics are not passed on, so no count of hidden rows is answered
//! from them.

use std::any::Any;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DFResult;
use datafusion::execution::context::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown, cast};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use sqlparser::ast::ExprWithAlias;

use super::versioned::{Versioned, versioned};
use crate::access::TablePolicy;
use crate::error::{Error, Result};

/// Parses a stored policy expression (pitlake's SQL dialect lives in a layer
/// above this one; the session hands its parser down).
pub type ExprParser = fn(&str) -> Result<sqlparser::ast::Expr>;

/// A table whose reads pass its row filter and masks.
#[derive(Debug)]
pub struct GovernedTable {
    name: String,
    inner: Arc<dyn TableProvider>,
    policy: Arc<TablePolicy>,
    parse: ExprParser,
    /// The inner table's schema, masked columns nullable.
    schema: SchemaRef,
}

impl GovernedTable {
    /// `inner` (the table `name`) read under `policy`.
    pub fn new(
        name: &str,
        inner: Arc<dyn TableProvider>,
        policy: Arc<TablePolicy>,
        parse: ExprParser,
    ) -> Self {
        let schema = masked_schema(&inner.schema(), &policy);
        GovernedTable {
            name: name.to_string(),
            inner,
            policy,
            parse,
            schema,
        }
    }

    fn wrap(&self, inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        Arc::new(GovernedTable::new(
            &self.name,
            inner,
            self.policy.clone(),
            self.parse,
        ))
    }

    /// The versioned table under the policy, if the inner table is one.
    pub(super) fn as_versioned(&self) -> Option<&dyn Versioned> {
        versioned(self.inner.as_ref()).map(|_| self as &dyn Versioned)
    }

    /// `schema.table` of the table under the policy.
    pub fn table_name(&self) -> &str {
        &self.name
    }

    pub(super) fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }
}

/// `schema` as the policy shows it: a masked column may be NULL.
fn masked_schema(schema: &SchemaRef, policy: &TablePolicy) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let field = f.as_ref().clone();
            match policy.masks.contains_key(f.name()) {
                true => field.with_nullable(true),
                false => field,
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The policy's expressions as logical expressions over `schema`, planned in
/// the reader's session (so `current_user()` and `is_member()` are theirs).
struct LogicalPolicy {
    filter: Option<Expr>,
    /// (column index, mask cast to the column's type)
    masks: Vec<(usize, Expr)>,
}

fn session_state(state: &dyn Session) -> Result<&SessionState> {
    state
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| Error::Internal("a table policy needs pitlake's session state".into()))
}

fn plan_expression(
    state: &SessionState,
    parse: ExprParser,
    table: &str,
    what: &str,
    text: &str,
    schema: &DFSchema,
) -> Result<Expr> {
    let broken = |e: String| {
        Error::Invalid(format!(
            "{table} cannot be read: its {what} does not apply to it ({e})"
        ))
    };
    let expr = parse(text).map_err(|e| broken(e.to_string()))?;
    state
        .create_logical_expr_from_sql_expr(ExprWithAlias { expr, alias: None }, schema)
        .map_err(|e| broken(e.to_string()))
}

fn logical_policy(
    state: &SessionState,
    parse: ExprParser,
    table: &str,
    policy: &TablePolicy,
    schema: &SchemaRef,
) -> Result<LogicalPolicy> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())
        .map_err(|e| Error::Internal(format!("the schema of {table}: {e}")))?;
    let filter = match &policy.row_filter {
        Some(text) => Some(plan_expression(
            state,
            parse,
            table,
            "row filter",
            text,
            &df_schema,
        )?),
        None => None,
    };
    let mut masks = Vec::new();
    for (column, text) in &policy.masks {
        // A column the table (at this snapshot) does not have shows nothing.
        let Ok(index) = schema.index_of(column) else {
            continue;
        };
        let what = format!("mask of column {column}");
        let mask = plan_expression(state, parse, table, &what, text, &df_schema)?;
        masks.push((index, cast(mask, schema.field(index).data_type().clone())));
    }
    Ok(LogicalPolicy { filter, masks })
}

/// A reader's predicate that may run on rows the row filter hides: one that
/// cannot fail, on columns that are not masked.
fn cannot_fail(expr: &Expr, policy: &TablePolicy) -> bool {
    let bare = |e: &Expr| matches!(e, Expr::Column(c) if !policy.masks.contains_key(&c.name));
    let constant = |e: &Expr| matches!(e, Expr::Literal(..));
    match expr {
        Expr::BinaryExpr(b) if matches!(b.op, Operator::And | Operator::Or) => {
            cannot_fail(&b.left, policy) && cannot_fail(&b.right, policy)
        }
        Expr::BinaryExpr(b)
            if matches!(
                b.op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
            ) =>
        {
            (bare(&b.left) && constant(&b.right)) || (constant(&b.left) && bare(&b.right))
        }
        Expr::IsNull(e) | Expr::IsNotNull(e) => bare(e),
        Expr::InList(list) => bare(&list.expr) && list.list.iter().all(constant),
        Expr::Between(between) => {
            bare(&between.expr) && constant(&between.low) && constant(&between.high)
        }
        _ => false,
    }
}

#[async_trait]
impl TableProvider for GovernedTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match cannot_fail(f, &self.policy) {
                true => TableProviderFilterPushDown::Inexact,
                false => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let session = session_state(state)?;
        let inner_schema = self.inner.schema();
        let policy = logical_policy(session, self.parse, &self.name, &self.policy, &inner_schema)?;
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..inner_schema.fields().len()).collect(),
        };
        // The columns the scan must read: those asked for, those the row
        // filter reads, those the masks of the asked-for columns read.
        let mut reads: BTreeSet<usize> = wanted.iter().copied().collect();
        let mut refs = Vec::new();
        if let Some(filter) = &policy.filter {
            refs.extend(filter.column_refs().into_iter().cloned());
        }
        for (index, mask) in &policy.masks {
            if wanted.contains(index) {
                refs.extend(mask.column_refs().into_iter().cloned());
            }
        }
        for column in refs {
            reads.insert(inner_schema.index_of(&column.name)?);
        }
        let reads: Vec<usize> = reads.into_iter().collect();
        let pushed: Vec<Expr> = filters
            .iter()
            .filter(|f| cannot_fail(f, &self.policy))
            .cloned()
            .collect();
        // A limit below the filter would cut visible rows short.
        let limit = limit.filter(|_| policy.filter.is_none());
        let scan = self.inner.scan(state, Some(&reads), &pushed, limit).await?;
        let scanned = DFSchema::try_from(scan.schema().as_ref().clone())?;
        let mut plan = scan;
        if let Some(filter) = policy.filter {
            let predicate = session.create_physical_expr(filter, &scanned)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
        for index in wanted {
            let name = inner_schema.field(index).name().clone();
            let expr = match policy.masks.iter().find(|(i, _)| *i == index) {
                Some((_, mask)) => session.create_physical_expr(mask.clone(), &scanned)?,
                None => Arc::new(Column::new(
                    &name,
                    scanned
                        .index_of_column_by_name(None, &name)
                        .ok_or_else(|| {
                            Error::Internal(format!("{}: column {name} not scanned", self.name))
                        })?,
                )) as Arc<dyn PhysicalExpr>,
            };
            exprs.push((expr, name));
        }
        let projected = ProjectionExec::try_new(exprs, plan)?;
        Ok(Arc::new(PolicyBarrierExec::new(Arc::new(projected))))
    }
}

impl Versioned for GovernedTable {
    fn name(&self) -> &str {
        &self.name
    }

    fn at_snapshot(&self, snapshot_id: i64) -> Result<Arc<dyn TableProvider>> {
        let inner = versioned(self.inner.as_ref()).ok_or_else(|| Error::NotIceberg {
            table: self.name.clone(),
        })?;
        Ok(self.wrap(inner.at_snapshot(snapshot_id)?))
    }

    fn snapshot_id(&self) -> Option<i64> {
        versioned(self.inner.as_ref()).and_then(|t| t.snapshot_id())
    }

    fn is_feature_group(&self) -> bool {
        versioned(self.inner.as_ref()).is_some_and(|t| t.is_feature_group())
    }

    fn in_ingest_order(&self) -> Arc<dyn TableProvider> {
        match versioned(self.inner.as_ref()) {
            Some(inner) => self.wrap(inner.in_ingest_order()),
            None => self.wrap(self.inner.clone()),
        }
    }

    fn with_runtime_filters(&self) -> Arc<dyn TableProvider> {
        match versioned(self.inner.as_ref()) {
            Some(inner) => self.wrap(inner.with_runtime_filters()),
            None => self.wrap(self.inner.clone()),
        }
    }

    fn reads_same_rows(&self, other: &dyn Versioned) -> bool {
        let Some(other) = other.as_any().downcast_ref::<GovernedTable>() else {
            return false;
        };
        match (
            versioned(self.inner.as_ref()),
            versioned(other.inner.as_ref()),
        ) {
            (Some(a), Some(b)) => self.policy == other.policy && a.reads_same_rows(b),
            _ => false,
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Keeps DataFusion from pushing a reader's predicates below a policy (see
/// the module docs); passes its input through unchanged.
#[derive(Debug)]
struct PolicyBarrierExec {
    input: Arc<dyn ExecutionPlan>,
}

impl PolicyBarrierExec {
    fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        PolicyBarrierExec { input }
    }
}

impl DisplayAs for PolicyBarrierExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PolicyBarrierExec")
    }
}

impl ExecutionPlan for PolicyBarrierExec {
    fn name(&self) -> &str {
        "PolicyBarrierExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(PolicyBarrierExec::new(input))),
            _ => Err(Error::Internal("PolicyBarrierExec has one child".into()).into()),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// An online lookup's rows under the policy: an entity whose latest row the
/// filter hides has NULL features (its keys stay, in request order), masked
/// columns show their mask. `batch` has every column of the group; `keys`
/// are the indices of its entity-key columns.
pub fn govern_lookup(
    state: &SessionState,
    parse: ExprParser,
    table: &str,
    policy: &TablePolicy,
    batch: RecordBatch,
    keys: &[usize],
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let logical = logical_policy(state, parse, table, policy, &schema)?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone())
        .map_err(|e| Error::Internal(format!("the schema of {table}: {e}")))?;
    let evaluate = |expr: Expr| -> Result<ArrayRef> {
        let physical = state.create_physical_expr(expr, &df_schema)?;
        Ok(physical
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))?)
    };
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (index, mask) in logical.masks {
        columns[index] = evaluate(mask)?;
    }
    if let Some(filter) = logical.filter {
        let visible = evaluate(filter)?;
        let visible = visible
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::Invalid(format!("the row filter of {table} is not boolean")))?;
        // NULL counts as hidden, as in WHERE.
        let hidden: BooleanArray = visible.iter().map(|v| Some(v != Some(true))).collect();
        for (index, column) in columns.iter_mut().enumerate() {
            if !keys.contains(&index) {
                *column = arrow::compute::nullif(column, &hidden)
                    .map_err(Error::arrow("hiding rows of an online lookup"))?;
            }
        }
    }
    let schema = masked_schema(&schema, policy);
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(
            |f| match keys.contains(&schema.index_of(f.name()).unwrap_or(usize::MAX)) {
                true => f.as_ref().clone(),
                false => f.as_ref().clone().with_nullable(true),
            },
        )
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(Error::arrow("an online lookup under its policy"))
}
