//! Physical planning of pitlake's logical nodes.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::error::Result as DFResult;
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::asof_join::AsOfJoinExec;
use crate::planning::AsOfJoinNode;

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
        Ok(Some(Arc::new(AsOfJoinExec::new(
            physical_inputs[0].clone(),
            physical_inputs[1].clone(),
            left_keys,
            right_keys,
            on_left(&join.left_match)?,
            join.op,
            on_right(&join.right_match)?,
            max_age,
            Arc::new(join.schema().as_arrow().clone()),
        ))))
    }
}
