//! The one type an ASOF JOIN compares its match values in, reached without
//! changing any comparison's answer.
//!
//! DataFusion compares timestamps of different units in the coarser unit,
//! truncating the finer value: `10:00:00 (s) >= 10:00:00.5 (ms)` holds in
//! seconds, which in a point-in-time join hands a label a value from its
//! future. Here the right side keeps its unit (its values decide which row is
//! nearest and which rows tie; rounding them would merge distinct rows) and a
//! finer left value is rounded into it in the direction that keeps the answer:
//! for an integer `r`, `r <= x ⟺ r <= floor(x)`, `r < x ⟺ r < ceil(x)`,
//! `r >= x ⟺ r >= ceil(x)`, `r > x ⟺ r > floor(x)`. A coarser left value is
//! widened exactly. A date against a timestamp is compared in the timestamp's
//! unit (exact), not in nanoseconds, so far dates do not overflow.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{Array, AsArray, PrimitiveArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Operator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use super::node::MatchOp;
use crate::error::{Error, Result};

/// Which way a finer value is rounded into a coarser unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Round {
    Down,
    Up,
}

impl Round {
    /// For the left match value of `l <op> r`, read as `r <op'> l`.
    pub fn for_left_match(op: MatchOp) -> Self {
        match op {
            // r <= l, r > l
            MatchOp::GtEq | MatchOp::Lt => Round::Down,
            // r < l, r >= l
            MatchOp::Gt | MatchOp::LtEq => Round::Up,
        }
    }

    /// For a maximum-age bound: `r >= b` (backward) or `r <= b` (forward),
    /// strict or not.
    pub fn for_bound(op: MatchOp, strict: bool) -> Self {
        match (op.is_backward(), strict) {
            (true, false) | (false, true) => Round::Up,
            (true, true) | (false, false) => Round::Down,
        }
    }
}

/// The type the left match value `l` and the right one `r` compare in.
pub fn match_type(l: &DataType, r: &DataType) -> Option<DataType> {
    use DataType as D;
    match (l, r) {
        (D::Timestamp(_, ltz), D::Timestamp(ru, rtz)) => {
            // DataFusion's rule for the zone: the left's when both have one.
            let tz = ltz.clone().or_else(|| rtz.clone());
            Some(D::Timestamp(*ru, tz))
        }
        (D::Date32 | D::Date64, D::Timestamp(..)) => Some(r.clone()),
        (D::Timestamp(..), D::Date32 | D::Date64) => Some(l.clone()),
        _ => comparison_coercion(l, r),
    }
}

/// `expr` as `target`: cast, or, for a timestamp finer than `target`, rounded
/// into its unit in the direction `round`.
pub fn to_match_type(
    expr: Expr,
    schema: &DFSchema,
    target: &DataType,
    round: Round,
) -> Result<Expr> {
    let expr = shift_in_finer_unit(expr, schema, target)?;
    let from = expr.get_type(schema)?;
    if let (DataType::Timestamp(fu, _), DataType::Timestamp(tu, tz)) = (&from, target) {
        let divisor = per_second(*fu) / per_second(*tu);
        if divisor > 1 {
            // The zone first (a naive value is taken as wall time in it), in
            // the finer unit, then the rounding.
            let zoned = expr.cast_to(&DataType::Timestamp(*fu, tz.clone()), schema)?;
            let udf = RoundTime {
                name: format!("{}_to_{}", round.name(), unit_name(*tu)),
                signature: Signature::any(1, Volatility::Immutable),
                target: target.clone(),
                divisor,
                round,
            };
            return Ok(ScalarUDF::new_from_impl(udf).call(vec![zoned]));
        }
    }
    Ok(expr.cast_to(target, schema)?)
}

/// `t ± interval` with `t` a date or a timestamp coarser than `target`: the
/// shift is done in the target's unit, as DataFusion would truncate
/// `seconds + 1500 ms` to seconds and `date - 2 hours` to a date.
fn shift_in_finer_unit(expr: Expr, schema: &DFSchema, target: &DataType) -> Result<Expr> {
    let DataType::Timestamp(target_unit, _) = target else {
        return Ok(expr);
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Plus | Operator::Minus) =>
        {
            let widened = match left.get_type(schema)? {
                // A date shifted by hours is a timestamp, not a date.
                DataType::Date32 | DataType::Date64 => {
                    Some(left.as_ref().clone().cast_to(target, schema)?)
                }
                DataType::Timestamp(unit, tz) if per_second(unit) < per_second(*target_unit) => {
                    Some(
                        left.as_ref()
                            .clone()
                            .cast_to(&DataType::Timestamp(*target_unit, tz), schema)?,
                    )
                }
                _ => None,
            };
            let left = widened.map_or(left, Box::new);
            Ok(Expr::BinaryExpr(BinaryExpr { left, op, right }))
        }
        other => Ok(other),
    }
}

impl Round {
    fn name(self) -> &'static str {
        match self {
            Round::Down => "floor",
            Round::Up => "ceil",
        }
    }

    fn apply(self, v: i64, divisor: i64) -> i64 {
        let (q, r) = (v / divisor, v % divisor);
        match self {
            Round::Down if r < 0 => q - 1,
            Round::Up if r > 0 => q + 1,
            _ => q,
        }
    }
}

fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    }
}

/// A timestamp rounded down or up into a coarser unit (`floor_to_us(l.ts)`
/// in EXPLAIN).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RoundTime {
    name: String,
    signature: Signature,
    target: DataType,
    divisor: i64,
    round: Round,
}

impl ScalarUDFImpl for RoundTime {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DFResult<DataType> {
        match args {
            [DataType::Timestamp(..)] => Ok(self.target.clone()),
            other => Err(Error::Invalid(format!(
                "{} takes one timestamp, not {other:?}",
                self.name
            ))
            .into()),
        }
    }

    /// Rounding never reorders: sorted input stays sorted (ties may form).
    fn output_ordering(&self, inputs: &[ExprProperties]) -> DFResult<SortProperties> {
        Ok(inputs
            .first()
            .map_or(SortProperties::Singleton, |p| p.sort_properties))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return Err(Error::Internal(format!("{} takes one argument", self.name)).into());
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let array = arg.to_array(args.number_rows)?;
        let ints = arrow::compute::cast(&array, &DataType::Int64)?;
        let rounded: PrimitiveArray<Int64Type> = ints
            .as_primitive::<Int64Type>()
            .unary(|v| self.round.apply(v, self.divisor));
        let out = arrow::compute::cast(&(Arc::new(rounded) as Arc<dyn Array>), &self.target)?;
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_every_comparison() {
        // For each fine x and coarse r (divisor 1000): r op x ⟺ r op round(x).
        for x in -3005_i64..3005 {
            let (down, up) = (Round::Down.apply(x, 1000), Round::Up.apply(x, 1000));
            for r in -5_i64..5 {
                let fine = r * 1000;
                assert_eq!(fine <= x, r <= down, "r={r} x={x}");
                assert_eq!(fine > x, r > down, "r={r} x={x}");
                assert_eq!(fine < x, r < up, "r={r} x={x}");
                assert_eq!(fine >= x, r >= up, "r={r} x={x}");
            }
        }
    }
}
