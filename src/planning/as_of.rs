//! Resolving `AS OF` clauses before planning: timestamps, tags and computed
//! snapshot ids (`FOR VERSION AS OF (SELECT ...)`) become literal snapshot
//! ids, which [`super::TimeTravelPlanner`] then pins. Evaluating an
//! expression runs a query, which only the session can do: it lends itself
//! as an [`Evaluate`].

use arrow::array::{Array, ArrayRef};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, TableVersion,
};

use super::time_travel::{collect_unresolved, pin_versions};
use crate::catalog::{AsOf, TableName, Warehouse, resolve_snapshot};
use crate::error::{Error, Result};
use crate::shared::REF_VERSION_FUNCTION;

/// What resolving a clause needs from the session.
#[async_trait]
pub trait Evaluate: Send + Sync {
    /// A constant expression (a scalar subquery included), evaluated to one value.
    async fn scalar(&self, expr: &ast::Expr) -> Result<ArrayRef>;

    /// `schema.table` for a table name as written.
    fn resolve_name(&self, name: &ObjectName) -> Result<TableName>;
}

/// Resolves every time-travel clause that is not a literal snapshot id
/// (timestamps, tags) and rewrites it to `VERSION AS OF <id>`.
pub async fn pin_time_travel(
    statement: &mut ast::Statement,
    warehouse: &Warehouse,
    session: &dyn Evaluate,
) -> Result<()> {
    let mut resolved = Vec::new();
    for clause in collect_unresolved(statement) {
        let as_of = evaluate_as_of(&clause.version, session).await?;
        let name = session.resolve_name(&clause.table)?;
        let table = warehouse
            .try_load_table(&name.schema, &name.table)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                table: name.to_string(),
            })?;
        let id = resolve_snapshot(&name.to_string(), table.metadata(), &as_of)?;
        resolved.push((clause, id));
    }
    pin_versions(statement, &resolved);
    Ok(())
}

/// Evaluates the expression of a time-travel clause.
async fn evaluate_as_of(version: &TableVersion, session: &dyn Evaluate) -> Result<AsOf> {
    match version {
        TableVersion::Function(ast::Expr::Function(f))
            if f.name
                .to_string()
                .eq_ignore_ascii_case(REF_VERSION_FUNCTION) =>
        {
            let FunctionArguments::List(list) = &f.args else {
                return Err(Error::NotSupported(format!("time-travel clause {version}")));
            };
            let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice() else {
                return Err(Error::NotSupported(format!("time-travel clause {version}")));
            };
            if let ast::Expr::Value(v) = arg
                && let ast::Value::SingleQuotedString(name) = &v.value
            {
                return Ok(AsOf::Ref(name.clone()));
            }
            Ok(AsOf::Snapshot(evaluate_snapshot_id(arg, session).await?))
        }
        TableVersion::TimestampAsOf(expr) | TableVersion::ForSystemTimeAsOf(expr) => {
            Ok(AsOf::Timestamp(evaluate_timestamp(expr, session).await?))
        }
        other => Err(Error::NotSupported(format!("time-travel clause {other}"))),
    }
}

/// Evaluates `VERSION AS OF (<expr>)` to a snapshot id.
async fn evaluate_snapshot_id(expr: &ast::Expr, session: &dyn Evaluate) -> Result<i64> {
    let value = session.scalar(expr).await?;
    if !value.data_type().is_integer() {
        return Err(Error::Invalid(format!(
            "VERSION AS OF needs a snapshot id, but {expr} is {}",
            value.data_type()
        )));
    }
    let ids = cast(&value, &DataType::Int64)
        .map_err(Error::invalid_input(format!("VERSION AS OF {expr}")))?;
    ids.as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .filter(|a| a.is_valid(0))
        .map(|a| a.value(0))
        .ok_or_else(|| Error::Invalid(format!("VERSION AS OF {expr} is NULL")))
}

/// Evaluates a constant expression to an instant; naive timestamps are UTC.
async fn evaluate_timestamp(expr: &ast::Expr, session: &dyn Evaluate) -> Result<DateTime<Utc>> {
    // A literal is read here: DataFusion's timestamps are nanoseconds,
    // which end in 2262, and a far-future instant means "the latest".
    if let Some(instant) = literal_instant(expr) {
        return Ok(instant);
    }
    let value = session.scalar(expr).await?;
    let value = &value;
    if !matches!(
        value.data_type(),
        DataType::Timestamp(_, _)
            | DataType::Date32
            | DataType::Date64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
    ) {
        return Err(Error::Invalid(format!(
            "TIMESTAMP AS OF needs a timestamp, but {expr} is {}",
            value.data_type()
        )));
    }
    let micros = cast(
        value,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )
    .map_err(Error::invalid_input(format!(
        "AS OF {expr} is not a timestamp"
    )))?;
    let micros = micros
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .filter(|a| a.is_valid(0))
        .ok_or_else(|| Error::Invalid(format!("AS OF {expr} is NULL or not a timestamp")))?;
    DateTime::from_timestamp_micros(micros.value(0))
        .ok_or_else(|| Error::Invalid(format!("AS OF {expr} is out of range")))
}

/// `TIMESTAMP '…'`, `DATE '…'` or a plain `'…'` in one of the usual forms,
/// as an instant (naive times are UTC); `None` for anything else.
fn literal_instant(expr: &ast::Expr) -> Option<DateTime<Utc>> {
    let text = match expr {
        ast::Expr::TypedString(typed)
            if matches!(
                typed.data_type,
                ast::DataType::Timestamp(_, ast::TimezoneInfo::None) | ast::DataType::Date
            ) =>
        {
            typed.value.value.clone().into_string()?
        }
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(text) => text.clone(),
            _ => return None,
        },
        _ => return None,
    };
    let text = text.trim();
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
}
