//! The filter an ASOF JOIN pushes into its right input once every partition
//! has read its left side: right rows that no label can match are skipped by
//! the scan (Parquet row groups and pages by their statistics), so a handful
//! of labels, or labels from one week, do not pay for the whole history.
//!
//! No label can match a right row whose key lies outside the labels' keys,
//! or whose match value lies beyond the labels' reach: after the latest label
//! for a backward join (`l >= r`: `r <= max(l)`), before the earliest for a
//! forward one. With a maximum age, nor can one older than every label's
//! bound (`r >= min(l - age)`). Skipping such rows cannot change an answer:
//! a skipped row is never a match, and ties are between equal values, which
//! are skipped together.
//!
//! Each partition reports what its held left side spans; the last one to
//! report publishes the filter, and all wait for it before reading the right
//! side, so no scan opens a file with the filter still unset. A partition
//! that could not hold its whole left side reports "anything": the filter
//! stays `true`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DFResult;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::Accumulator;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, DynamicFilterPhysicalExpr, in_list, lit};
use datafusion::physical_expr::{PhysicalExprRef, conjunction};

use crate::shared::MatchOp;

/// Distinct values of a single key up to which the filter lists them
/// (`k IN (...)`, which bloom filters and Parquet's row-level filter use;
/// 4096 labels against 50M rows decode 0.2M rows instead of 50M); beyond it,
/// only the key's range.
const MAX_LISTED_KEYS: usize = 8192;
/// Left rows up to which a partition looks for its few distinct keys.
pub const MAX_LISTING_ROWS: usize = MAX_LISTED_KEYS * 64;

/// What one partition's left side spans.
#[derive(Debug, Clone, Default)]
pub struct LeftSpan {
    /// Per key column, the least and greatest value (None: no value).
    keys: Vec<Option<(ScalarValue, ScalarValue)>>,
    /// The distinct values of a single key column, while few.
    listed: Option<HashSet<ScalarValue>>,
    /// The least and greatest left match value.
    matches: Option<(ScalarValue, ScalarValue)>,
    /// The least and greatest maximum-age bound.
    bounds: Option<(ScalarValue, ScalarValue)>,
}

impl LeftSpan {
    /// What `keys`, `matches` and `bounds` (evaluated per left batch) span.
    pub fn of(
        keys: &[Vec<ArrayRef>],
        matches: &[ArrayRef],
        bounds: Option<&[ArrayRef]>,
    ) -> DFResult<Self> {
        let columns = keys.first().map_or(0, Vec::len);
        let mut span = LeftSpan {
            keys: Vec::with_capacity(columns),
            listed: None,
            matches: range(matches.iter())?,
            bounds: match bounds {
                Some(b) => range(b.iter())?,
                None => None,
            },
        };
        for c in 0..columns {
            span.keys.push(range(keys.iter().map(|k| &k[c]))?);
        }
        let rows: usize = matches.iter().map(|m| m.len()).sum();
        if columns == 1 && rows <= MAX_LISTING_ROWS {
            span.listed = distinct_keys(keys.iter().map(|k| &k[0]))?;
        }
        Ok(span)
    }

    fn merge(self, other: LeftSpan) -> LeftSpan {
        let listed = match (self.listed, other.listed) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                (a.len() <= MAX_LISTED_KEYS).then_some(a)
            }
            _ => None,
        };
        let keys = if self.keys.is_empty() {
            other.keys
        } else if other.keys.is_empty() {
            self.keys
        } else {
            self.keys
                .into_iter()
                .zip(other.keys)
                .map(|(a, b)| widen(a, b))
                .collect()
        };
        LeftSpan {
            keys,
            listed,
            matches: widen(self.matches, other.matches),
            bounds: widen(self.bounds, other.bounds),
        }
    }
}

/// The distinct non-null values over `arrays`, while at most MAX_LISTED_KEYS.
fn distinct_keys<'a>(
    arrays: impl Iterator<Item = &'a ArrayRef>,
) -> DFResult<Option<HashSet<ScalarValue>>> {
    let mut listed = HashSet::new();
    for array in arrays {
        for i in (0..array.len()).filter(|&i| array.is_valid(i)) {
            listed.insert(ScalarValue::try_from_array(array, i)?);
            if listed.len() > MAX_LISTED_KEYS {
                return Ok(None);
            }
        }
    }
    Ok(Some(listed))
}

/// The least and greatest non-null value over `arrays`.
fn range<'a>(
    arrays: impl Iterator<Item = &'a ArrayRef>,
) -> DFResult<Option<(ScalarValue, ScalarValue)>> {
    let mut bounds: Option<(MinAccumulator, MaxAccumulator)> = None;
    for a in arrays {
        if a.null_count() == a.len() {
            continue;
        }
        let (min, max) = match &mut bounds {
            Some(b) => b,
            None => bounds.insert((
                MinAccumulator::try_new(a.data_type())?,
                MaxAccumulator::try_new(a.data_type())?,
            )),
        };
        min.update_batch(std::slice::from_ref(a))?;
        max.update_batch(std::slice::from_ref(a))?;
    }
    match bounds {
        Some((mut min, mut max)) => Ok(Some((min.evaluate()?, max.evaluate()?))),
        None => Ok(None),
    }
}

fn widen(
    a: Option<(ScalarValue, ScalarValue)>,
    b: Option<(ScalarValue, ScalarValue)>,
) -> Option<(ScalarValue, ScalarValue)> {
    match (a, b) {
        (Some((amin, amax)), Some((bmin, bmax))) => {
            let min = if bmin.partial_cmp(&amin).is_some_and(|o| o.is_lt()) {
                bmin
            } else {
                amin
            };
            let max = if bmax.partial_cmp(&amax).is_some_and(|o| o.is_gt()) {
                bmax
            } else {
                amax
            };
            Some((min, max))
        }
        (a, None) => a,
        (None, b) => b,
    }
}

/// The dynamic filter on the right input and the partitions' reports.
#[derive(Debug)]
pub struct RightFilter {
    filter: Arc<DynamicFilterPhysicalExpr>,
    /// Right key expressions, shared by the join's arms.
    keys: Vec<PhysicalExprRef>,
    /// Per arm of the join: a right row any arm can match is kept.
    arms: Vec<FilterArm>,
    right_schema: Arc<Schema>,
    reports: Mutex<Reports>,
    /// Whether the filter is published (every partition has reported).
    published: tokio::sync::watch::Sender<bool>,
}

/// One arm of the join, as the filter sees it.
#[derive(Debug)]
pub struct FilterArm {
    /// Its right match expression.
    pub matches: PhysicalExprRef,
    pub op: MatchOp,
    /// Whether its maximum-age bound is strict (None: no maximum age).
    pub max_age_strict: Option<bool>,
}

#[derive(Debug)]
struct Reports {
    /// Partitions yet to report.
    waiting: usize,
    /// What the partitions reported so far span, per arm.
    span: Option<Vec<LeftSpan>>,
    /// A partition could not say (it did not hold its whole left side).
    unbounded: bool,
}

impl RightFilter {
    /// The expression to push into the right input: `true` until published.
    /// `matches`: each arm's right match expression.
    pub fn expr(
        keys: &[PhysicalExprRef],
        matches: &[PhysicalExprRef],
    ) -> DynamicFilterPhysicalExpr {
        let mut children = keys.to_vec();
        for m in matches {
            if !children.contains(m) {
                children.push(m.clone());
            }
        }
        DynamicFilterPhysicalExpr::new(children, lit(true))
    }

    pub fn new(
        filter: Arc<DynamicFilterPhysicalExpr>,
        keys: Vec<PhysicalExprRef>,
        arms: Vec<FilterArm>,
        right_schema: Arc<Schema>,
        partitions: usize,
    ) -> Self {
        RightFilter {
            filter,
            keys,
            arms,
            right_schema,
            reports: Mutex::new(Reports {
                waiting: partitions,
                span: None,
                unbounded: false,
            }),
            published: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The report one partition owes; see [`Report`].
    pub fn report(self: &Arc<Self>) -> Report {
        Report {
            filter: self.clone(),
            sent: false,
        }
    }

    /// Counts one partition's report (per arm; None: not all of its left
    /// side held); the last one publishes the filter, and learns how that
    /// went.
    fn submit(&self, span: Option<Vec<LeftSpan>>) -> DFResult<()> {
        let mut reports = self.reports.lock().expect("reports lock");
        match span {
            None => reports.unbounded = true,
            Some(b) => {
                reports.span = Some(match reports.span.take() {
                    Some(a) => a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect(),
                    None => b,
                })
            }
        }
        reports.waiting = reports.waiting.saturating_sub(1);
        if reports.waiting > 0 || *self.published.borrow() {
            return Ok(());
        }
        let updated = match (reports.unbounded, reports.span.take()) {
            (false, Some(span)) => self.build(span).and_then(|e| self.filter.update(e)),
            _ => Ok(()),
        };
        // Published even when building failed, so no partition waits forever.
        self.filter.mark_complete();
        self.published.send_replace(true);
        updated
    }

    /// The predicate on right rows that some label could match, in some
    /// arm: the labels' keys, and the reach of any arm.
    fn build(&self, spans: Vec<LeftSpan>) -> DFResult<PhysicalExprRef> {
        let Some(keys) = spans.first().map(|s| (s.keys.clone(), s.listed.clone())) else {
            return Ok(lit(true));
        };
        let mut reaches = Vec::with_capacity(self.arms.len());
        for (arm, span) in self.arms.iter().zip(spans) {
            // An arm without a left match value matches nothing.
            if let Some(reach) = self.reach(arm, span)? {
                reaches.push(reach);
            }
        }
        let mut parts: Vec<PhysicalExprRef> = match reaches.len() {
            0 => return Ok(lit(false)),
            1 => reaches.pop().unwrap_or_default(),
            _ => {
                let any = reaches.into_iter().map(conjunction).reduce(|a, b| {
                    Arc::new(BinaryExpr::new(a, Operator::Or, b)) as PhysicalExprRef
                });
                any.into_iter().collect()
            }
        };
        let (ranges, listed) = keys;
        for (expr, range) in self.keys.iter().zip(ranges) {
            let Some((lo, hi)) = range else {
                return Ok(lit(false));
            };
            self.compare(&mut parts, expr, Operator::GtEq, lo)?;
            self.compare(&mut parts, expr, Operator::LtEq, hi)?;
        }
        if let (Some(listed), [key]) = (listed, self.keys.as_slice()) {
            let data_type = key.data_type(&self.right_schema)?;
            let values: Vec<PhysicalExprRef> = listed
                .into_iter()
                .filter_map(|v| v.cast_to(&data_type).ok())
                .map(lit)
                .collect();
            if values.is_empty() {
                return Ok(lit(false));
            }
            parts.push(in_list(key.clone(), values, &false, &self.right_schema)?);
        }
        Ok(conjunction(parts))
    }

    /// The bounds on one arm's right match values (none: the arm's left
    /// side has no match value, so it matches nothing).
    fn reach(&self, arm: &FilterArm, span: LeftSpan) -> DFResult<Option<Vec<PhysicalExprRef>>> {
        let Some((min, max)) = span.matches else {
            return Ok(None);
        };
        let mut parts = Vec::new();
        let (reach, reach_op) = match arm.op {
            MatchOp::GtEq => (max, Operator::LtEq),
            MatchOp::Gt => (max, Operator::Lt),
            MatchOp::LtEq => (min, Operator::GtEq),
            MatchOp::Lt => (min, Operator::Gt),
        };
        self.compare(&mut parts, &arm.matches, reach_op, reach)?;
        if let (Some(strict), Some((lo, hi))) = (arm.max_age_strict, span.bounds) {
            let (bound, op) = match (arm.op.is_backward(), strict) {
                (true, false) => (lo, Operator::GtEq),
                (true, true) => (lo, Operator::Gt),
                (false, false) => (hi, Operator::LtEq),
                (false, true) => (hi, Operator::Lt),
            };
            self.compare(&mut parts, &arm.matches, op, bound)?;
        }
        Ok(Some(parts))
    }

    /// Adds `expr <op> value`, the value cast to the expression's type; a
    /// value that does not cast adds nothing (the filter only narrows).
    fn compare(
        &self,
        parts: &mut Vec<PhysicalExprRef>,
        expr: &PhysicalExprRef,
        op: Operator,
        value: ScalarValue,
    ) -> DFResult<()> {
        let data_type = expr.data_type(&self.right_schema)?;
        if let Ok(value) = value.cast_to(&data_type) {
            parts.push(Arc::new(BinaryExpr::new(expr.clone(), op, lit(value))));
        }
        Ok(())
    }
}

/// The report one partition owes the filter for an execution. Dropped
/// unsent (the partition failed before it read its left side, or its stream
/// was dropped), it reports "anything", so the other partitions never wait
/// for it.
#[derive(Debug)]
pub struct Report {
    filter: Arc<RightFilter>,
    sent: bool,
}

impl Report {
    /// Reports this partition's left side (None: not all of it held) and
    /// waits until every partition has, and the filter is published.
    pub async fn send(mut self, span: Option<Vec<LeftSpan>>) -> DFResult<()> {
        self.sent = true;
        let mut published = self.filter.published.subscribe();
        let outcome = self.filter.submit(span);
        // The sender lives in the filter this report holds: never closed.
        let _ = published.wait_for(|done| *done).await;
        outcome
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.filter.submit(None);
        }
    }
}
