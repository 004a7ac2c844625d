//! The logical ASOF JOIN: every left row once, with the right row of equal keys
//! whose match value is nearest while satisfying the match condition.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use datafusion::common::{DFSchema, DFSchemaRef, JoinType};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::logical_plan::builder::build_join_schema;
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::{
    Expr, ExprSchemable, Extension, LogicalPlan, UserDefinedLogicalNodeCore,
};

use super::coercion::{Round, match_type, to_match_type};
use crate::error::{Error, Result};
pub use crate::shared::MatchOp;

/// A bound on how far the match may be from the left value (a maximum age).
///
/// Backward matches need `right >= bound` (`>` when `strict`); forward matches
/// need `right <= bound` (`<` when strict). `bound` is evaluated on the left row,
/// e.g. `l.ts - INTERVAL '7 days'`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct MaxAge {
    pub bound: Expr,
    pub strict: bool,
}

/// `left ASOF JOIN right MATCH_CONDITION (left_match op right_match) ON keys [AND max age]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsOfJoinNode {
    pub left: LogicalPlan,
    pub right: LogicalPlan,
    /// Equality keys `(left expr, right expr)`, cast to a common type.
    pub on: Vec<(Expr, Expr)>,
    pub left_match: Expr,
    pub op: MatchOp,
    pub right_match: Expr,
    pub max_age: Option<MaxAge>,
    schema: DFSchemaRef,
}

// DFSchema has no order; plans are never sorted by their nodes.
impl PartialOrd for AsOfJoinNode {
    fn partial_cmp(&self, _other: &Self) -> Option<Ordering> {
        None
    }
}

impl AsOfJoinNode {
    /// Checks and coerces the parts: keys are cast to common types, match
    /// values and the maximum-age bound to the match type (see `coercion`).
    pub fn try_new(
        left: LogicalPlan,
        right: LogicalPlan,
        on: Vec<(Expr, Expr)>,
        left_match: Expr,
        op: MatchOp,
        right_match: Expr,
        max_age: Option<MaxAge>,
    ) -> Result<Self> {
        let (ls, rs) = (left.schema().clone(), right.schema().clone());
        let mut keys = Vec::with_capacity(on.len());
        for (l, r) in on {
            let (l, r) = coerce_pair(&l, &ls, &r, &rs, "key")?;
            keys.push((l, r));
        }
        let (lt, rt) = (left_match.get_type(&ls)?, right_match.get_type(&rs)?);
        let match_type = match_type(&lt, &rt).ok_or_else(|| {
            Error::Invalid(format!(
                "ASOF JOIN match condition compares {left_match} ({lt}) with {right_match} ({rt}): the types do not compare"
            ))
        })?;
        match_kind(&match_type)?;
        let left_match = to_match_type(left_match, &ls, &match_type, Round::for_left_match(op))?;
        let right_match = right_match.cast_to(&match_type, &rs)?;
        let max_age = match max_age {
            Some(MaxAge { bound, strict }) => {
                let round = Round::for_bound(op, strict);
                let bound = to_match_type(bound, &ls, &match_type, round)?;
                Some(MaxAge { bound, strict })
            }
            None => None,
        };
        let schema = Arc::new(build_join_schema(&ls, &rs, &JoinType::Left)?);
        Ok(AsOfJoinNode {
            left,
            right,
            on: keys,
            left_match,
            op,
            right_match,
            max_age,
            schema,
        })
    }

    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }
}

/// Casts a left and a right expression to the type both compare as.
fn coerce_pair(
    l: &Expr,
    ls: &DFSchema,
    r: &Expr,
    rs: &DFSchema,
    what: &str,
) -> Result<(Expr, Expr)> {
    let (lt, rt) = (l.get_type(ls)?, r.get_type(rs)?);
    let common = comparison_coercion(&lt, &rt).ok_or_else(|| {
        Error::Invalid(format!(
            "ASOF JOIN {what} compares {l} ({lt}) with {r} ({rt}): the types do not compare"
        ))
    })?;
    // Keys are compared by value: a dictionary-encoded side is decoded (its
    // range and key list, pushed to the right side, are then plain values).
    let common = match common {
        arrow::datatypes::DataType::Dictionary(_, values) => *values,
        other => other,
    };
    Ok((
        l.clone().cast_to(&common, ls)?,
        r.clone().cast_to(&common, rs)?,
    ))
}

/// Match columns must be ordered scalars: timestamps, dates, numbers.
pub fn match_kind(t: &arrow::datatypes::DataType) -> Result<()> {
    use arrow::datatypes::DataType as D;
    match t {
        D::Int8
        | D::Int16
        | D::Int32
        | D::Int64
        | D::UInt8
        | D::UInt16
        | D::UInt32
        | D::UInt64
        | D::Float32
        | D::Float64
        | D::Decimal128(_, _)
        | D::Date32
        | D::Date64
        | D::Timestamp(_, _)
        | D::Duration(_)
        | D::Null => Ok(()),
        other => Err(Error::Invalid(format!(
            "ASOF JOIN match columns must be timestamps, dates or numbers, not {other}"
        ))),
    }
}

impl UserDefinedLogicalNodeCore for AsOfJoinNode {
    fn name(&self) -> &str {
        "AsOfJoin"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left, &self.right]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        let mut exprs = Vec::with_capacity(self.on.len() * 2 + 3);
        for (l, r) in &self.on {
            exprs.push(l.clone());
            exprs.push(r.clone());
        }
        exprs.push(self.left_match.clone());
        exprs.push(self.right_match.clone());
        if let Some(age) = &self.max_age {
            exprs.push(age.bound.clone());
        }
        exprs
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
        write!(
            f,
            "AsOfJoin: match=[{} {} {}], on=[{}]",
            self.left_match,
            self.op.symbol(),
            self.right_match,
            keys.join(", ")
        )?;
        if let Some(age) = &self.max_age {
            let cmp = self.op.bound_symbol(age.strict);
            write!(f, ", max_age=[{} {cmp} {}]", self.right_match, age.bound)?;
        }
        Ok(())
    }

    /// Only the columns the output needs plus those the join reads flow up
    /// from each input, so scans read fewer columns.
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let (ls, rs) = (self.left.schema(), self.right.schema());
        let nl = ls.fields().len();
        let mut left: BTreeSet<usize> =
            output_columns.iter().copied().filter(|i| *i < nl).collect();
        let mut right: BTreeSet<usize> = output_columns
            .iter()
            .filter(|i| **i >= nl)
            .map(|i| i - nl)
            .collect();
        let left_exprs = self
            .on
            .iter()
            .map(|(l, _)| l)
            .chain([&self.left_match])
            .chain(self.max_age.as_ref().map(|a| &a.bound));
        for expr in left_exprs {
            for column in expr.column_refs() {
                left.insert(ls.index_of_column(column).ok()?);
            }
        }
        for expr in self.on.iter().map(|(_, r)| r).chain([&self.right_match]) {
            for column in expr.column_refs() {
                right.insert(rs.index_of_column(column).ok()?);
            }
        }
        // The ingestion order of a feature group breaks ties (see IngestOrderScanExec).
        if let Some(i) = rs
            .fields()
            .iter()
            .position(|f| f.name() == crate::shared::INGEST_ORDER_COLUMN)
        {
            right.insert(i);
        }
        Some(vec![
            left.into_iter().collect(),
            right.into_iter().collect(),
        ])
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let [left, right]: [LogicalPlan; 2] = inputs
            .try_into()
            .map_err(|_| Error::Internal("AsOfJoin has two inputs".into()))?;
        let mut exprs = exprs.into_iter();
        let mut on = Vec::with_capacity(self.on.len());
        for _ in 0..self.on.len() {
            match (exprs.next(), exprs.next()) {
                (Some(l), Some(r)) => on.push((l, r)),
                _ => return Err(Error::Internal("AsOfJoin lost its keys".into()).into()),
            }
        }
        let (Some(left_match), Some(right_match)) = (exprs.next(), exprs.next()) else {
            return Err(Error::Internal("AsOfJoin lost its match condition".into()).into());
        };
        let max_age = match (&self.max_age, exprs.next()) {
            (Some(age), Some(bound)) => Some(MaxAge {
                bound,
                strict: age.strict,
            }),
            _ => None,
        };
        let schema = Arc::new(build_join_schema(
            left.schema(),
            right.schema(),
            &JoinType::Left,
        )?);
        Ok(AsOfJoinNode {
            left,
            right,
            on,
            left_match,
            op: self.op,
            right_match,
            max_age,
            schema,
        })
    }
}
