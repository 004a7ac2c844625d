//! Physical planning of pitlake's logical nodes: where the logical layer
//! meets the operators of `execution/`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::error::Result as DFResult;
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::AsOfJoinNode;
use super::asof_join::same_right_relation;
use crate::execution::asof_join::{AsOfJoinExec, filter_rows_while_decoding, worth_filtering_rows};
use crate::options::PitlakeOptions;

/// DataFusion's physical planner plus pitlake's extension planners.
#[derive(Debug, Default)]
pub struct PitlakeQueryPlanner;

#[async_trait]
impl QueryPlanner for PitlakeQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &SessionState,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(AsOfJoinExtensionPlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

/// [`AsOfJoinNode`] → [`AsOfJoinExec`].
#[derive(Debug, Default)]
pub struct AsOfJoinExtensionPlanner;

#[async_trait]
impl ExtensionPlanner for AsOfJoinExtensionPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session_state: &SessionState,
    ) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(join) = node.as_any().downcast_ref::<AsOfJoinNode>() else {
            return Ok(None);
        };
        let (ls, rs) = (logical_inputs[0].schema(), logical_inputs[1].schema());
        let on_left = |e| planner.create_physical_expr(e, ls, session_state);
        let on_right = |e| planner.create_physical_expr(e, rs, session_state);
        let left_keys = join
            .on
            .iter()
            .map(|(l, _)| on_left(l))
            .collect::<DFResult<Vec<_>>>()?;
        let right_keys = join
            .on
            .iter()
            .map(|(_, r)| on_right(r))
            .collect::<DFResult<Vec<_>>>()?;
        let max_age = match &join.max_age {
            Some(age) => Some((on_left(&age.bound)?, age.strict)),
            None => None,
        };
        let right = if worth_filtering_rows(physical_inputs[0].as_ref()) {
            filter_rows_while_decoding(physical_inputs[1].clone())?
        } else {
            physical_inputs[1].clone()
        };
        let planned = AsOfJoinExec::new(
            physical_inputs[0].clone(),
            right,
            left_keys,
            right_keys,
            on_left(&join.left_match)?,
            join.op,
            on_right(&join.right_match)?,
            max_age,
            Arc::new(join.schema().as_arrow().clone()),
        );
        let share = session_state
            .config()
            .options()
            .extensions
            .get::<PitlakeOptions>()
            .is_none_or(|o| o.asof_join_shared_scan);
        if share && let Some(shared) = with_shared_right(join, logical_inputs[0], &planned)? {
            return Ok(Some(Arc::new(shared)));
        }
        Ok(Some(Arc::new(planned)))
    }
}

/// `planned` (the physical `join`) as one more arm of the ASOF JOIN below
/// it, when that one reads the same right relation (see
/// [`AsOfJoinExec::absorb`]): a chain of lag features reads it once.
fn with_shared_right(
    join: &AsOfJoinNode,
    logical_left: &LogicalPlan,
    planned: &AsOfJoinExec,
) -> DFResult<Option<AsOfJoinExec>> {
    // The join below, under at most one projection.
    let below = match logical_left {
        LogicalPlan::Projection(p) => p.input.as_ref(),
        other => other,
    };
    let LogicalPlan::Extension(below) = below else {
        return Ok(None);
    };
    let Some(below) = below.node.as_any().downcast_ref::<AsOfJoinNode>() else {
        return Ok(None);
    };
    if !same_right_relation(&below.right, &join.right) {
        return Ok(None);
    }
    let left = planned.children()[0];
    let (between, inner) = match left.as_any().downcast_ref::<ProjectionExec>() {
        Some(p) => (Some(p), p.input()),
        None => (None, left),
    };
    match inner.as_any().downcast_ref::<AsOfJoinExec>() {
        Some(inner) => inner.absorb(between, planned),
        None => Ok(None),
    }
}
