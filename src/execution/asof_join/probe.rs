//! The left side of a partition: the join's expressions over its held
//! batches, and the join of a left batch against the right side's index.

use arrow::array::{ArrayRef, RecordBatch};
use datafusion::error::Result as DFResult;
use datafusion::physical_expr::PhysicalExprRef;

use super::exec::Arm;
use super::index::RightIndex;
use super::metrics::JoinMetrics;
use super::output::Output;
use super::right_filter::LeftSpan;
use super::values::ordered_i64;

pub struct ProbeSide {
    pub keys: Vec<PhysicalExprRef>,
    pub arms: Vec<Arm>,
    pub output: Output,
}

/// The join's expressions over every held left batch.
pub struct HeldLeft {
    pub keys: Vec<Vec<ArrayRef>>,
    pub arms: Vec<HeldArm>,
}

/// One arm's expressions over every held left batch.
pub struct HeldArm {
    pub matches: Vec<ArrayRef>,
    /// Maximum-age bounds, and whether they are strict.
    pub bounds: Option<(Vec<ArrayRef>, bool)>,
}

impl HeldLeft {
    /// What each arm's left side spans.
    pub fn spans(&self) -> DFResult<Vec<LeftSpan>> {
        self.arms
            .iter()
            .map(|arm| {
                LeftSpan::of(
                    &self.keys,
                    &arm.matches,
                    arm.bounds.as_ref().map(|(b, _)| b.as_slice()),
                )
            })
            .collect()
    }
}

impl ProbeSide {
    pub fn evaluate_held(&self, head: &[RecordBatch]) -> DFResult<HeldLeft> {
        Ok(HeldLeft {
            keys: head
                .iter()
                .map(|b| evaluate(&self.keys, b))
                .collect::<DFResult<_>>()?,
            arms: self
                .arms
                .iter()
                .map(|arm| {
                    Ok(HeldArm {
                        matches: evaluate_each(&arm.left_match, head)?,
                        bounds: match &arm.max_age {
                            Some((expr, strict)) => Some((evaluate_each(expr, head)?, *strict)),
                            None => None,
                        },
                    })
                })
                .collect::<DFResult<_>>()?,
        })
    }

    /// Joins one left batch against the partition's right index, per arm.
    pub fn join(
        &self,
        indexes: &[RightIndex],
        batch: &RecordBatch,
        metrics: &JoinMetrics,
    ) -> DFResult<RecordBatch> {
        let n = batch.num_rows();
        let keys = evaluate(&self.keys, batch)?;
        let mut right = Vec::with_capacity(self.arms.len());
        for (arm, index) in self.arms.iter().zip(indexes) {
            let groups = index.groups_of(&keys, n)?;
            let values = ordered_i64(&arm.left_match.evaluate(batch)?.into_array(n)?)?;
            let bounds = match &arm.max_age {
                Some((expr, strict)) => {
                    Some((ordered_i64(&expr.evaluate(batch)?.into_array(n)?)?, *strict))
                }
                None => None,
            };
            let mut matched = 0usize;
            let found: Vec<Option<u32>> = (0..n)
                .map(|i| {
                    let (value, group) = (values.get(i)?, groups[i]?);
                    let bound = match &bounds {
                        Some((b, strict)) => Some((b.get(i)?, *strict)),
                        None => None,
                    };
                    let found = index.probe(group, value, arm.op, bound);
                    matched += usize::from(found.is_some());
                    found
                })
                .collect();
            metrics.matched_rows.add(matched);
            right.push(index.take(&found)?);
        }
        self.output.batch(batch, &right)
    }
}

/// One expression over each of `batches`.
pub fn evaluate_each(expr: &PhysicalExprRef, batches: &[RecordBatch]) -> DFResult<Vec<ArrayRef>> {
    batches
        .iter()
        .map(|b| expr.evaluate(b)?.into_array(b.num_rows()))
        .collect()
}

pub fn evaluate(exprs: &[PhysicalExprRef], batch: &RecordBatch) -> DFResult<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}
