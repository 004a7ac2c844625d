//! Time travel in planning: every `AS OF` clause becomes a scan of one pinned
//! snapshot, or an error. Never a silent read of the current snapshot.
//!
//! Two steps, because resolving a timestamp or a tag needs I/O and planning a
//! relation does not allow it:
//! 1. before planning, [`collect_unresolved`] finds clauses other than a literal
//!    snapshot id; the session resolves each to a snapshot id and
//!    [`pin_versions`] rewrites the clause to `VERSION AS OF <id>`;
//! 2. while planning, [`TimeTravelPlanner`] turns `table VERSION AS OF <id>` into
//!    a scan of that snapshot with that snapshot's schema.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::catalog::default_table_source::{provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use sqlparser::ast::{
    Expr, ObjectName, Statement, TableFactor, TableVersion, Value, ValueWithSpan, VisitMut,
    VisitorMut,
};

use crate::error::Error;
use crate::tables::versioned;

/// A time-travel clause that names something other than a snapshot id.
#[derive(Debug, Clone)]
pub struct UnresolvedVersion {
    pub table: ObjectName,
    pub version: TableVersion,
}

impl UnresolvedVersion {
    fn key(&self) -> (String, String) {
        (self.table.to_string(), self.version.to_string())
    }
}

/// The literal snapshot id of `VERSION AS OF <number>`, if that is the form.
fn literal_snapshot_id(version: &TableVersion) -> Option<Result<i64, Error>> {
    match version {
        TableVersion::VersionAsOf(Expr::Value(ValueWithSpan {
            value: Value::Number(n, _),
            ..
        })) => Some(n.parse::<i64>().map_err(|_| {
            Error::Invalid(format!(
                "VERSION AS OF {n}: a snapshot id is a 64-bit integer"
            ))
        })),
        _ => None,
    }
}

/// Finds the clauses of a statement that need resolving before planning.
pub fn collect_unresolved(statement: &mut Statement) -> Vec<UnresolvedVersion> {
    struct Collect(Vec<UnresolvedVersion>);
    impl VisitorMut for Collect {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                version: Some(version),
                ..
            } = factor
                && literal_snapshot_id(version).is_none()
            {
                self.0.push(UnresolvedVersion {
                    table: name.clone(),
                    version: version.clone(),
                });
            }
            ControlFlow::Continue(())
        }
    }
    let mut collect = Collect(Vec::new());
    let _ = statement.visit(&mut collect);
    collect.0
}

/// Rewrites resolved clauses to `VERSION AS OF <snapshot id>`.
pub fn pin_versions(statement: &mut Statement, resolved: &[(UnresolvedVersion, i64)]) {
    struct Pin(HashMap<(String, String), i64>);
    impl VisitorMut for Pin {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                version: Some(version),
                ..
            } = factor
            {
                let key = (name.to_string(), version.to_string());
                if let Some(id) = self.0.get(&key) {
                    *version = TableVersion::VersionAsOf(Expr::value(Value::Number(
                        id.to_string(),
                        false,
                    )));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let map = resolved.iter().map(|(u, id)| (u.key(), *id)).collect();
    let _ = statement.visit(&mut Pin(map));
}

/// Plans `<table> VERSION AS OF <snapshot id>` as a scan of that snapshot.
#[derive(Debug, Default)]
pub struct TimeTravelPlanner;

impl RelationPlanner for TimeTravelPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DFResult<RelationPlanning> {
        let TableFactor::Table {
            name,
            alias,
            version: Some(version),
            args,
            sample,
            ..
        } = relation
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let unresolved = || -> DataFusionError {
            Error::NotSupported(format!("time-travel clause {version} on {name}")).into()
        };
        let snapshot_id = literal_snapshot_id(&version).ok_or_else(unresolved)??;
        if args.is_some() || sample.is_some() {
            return Err(Error::NotSupported(format!(
                "{version} on {name} combined with table arguments or TABLESAMPLE"
            ))
            .into());
        }
        let table_ref = context.object_name_to_table_reference(name.clone())?;
        let source = context
            .context_provider()
            .get_table_source(table_ref.clone())?;
        let provider = source_as_provider(&source)?;
        let table = versioned(provider.as_ref()).ok_or_else(|| Error::NotIceberg {
            table: name.to_string(),
        })?;
        let pinned = table.at_snapshot(snapshot_id)?;
        let plan =
            LogicalPlanBuilder::scan(table_ref, provider_as_source(pinned), None)?.build()?;
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}
