//! A physical filter pushed into a scan of ours (the right-side filter of an
//! ASOF JOIN, a `WHERE` above), as an Iceberg predicate: Iceberg then skips
//! data files by their manifest statistics and Parquet row groups by theirs.
//!
//! Only conjuncts of the form `column <cmp> literal` and `column IN (...)`
//! are translated; the others are dropped, which only widens the predicate,
//! so the rows read are a superset of the rows the filter keeps. Whoever
//! pushed the filter still applies it (the scan reports it as not pushed).
//!
//! Two predicates come of one filter. The one that plans the scan keeps
//! `IN` lists whole: Iceberg checks each data file's statistics against the
//! list once. The one the Parquet reader gets turns a long list into its
//! range, because Iceberg's row filter compares every row with every value
//! of a list, one pass per value (4096 labels' keys against 50M rows kept one
//! core busy for 90 s); the scan applies such lists itself, hashed.
//!
//! Floating-point literals need care: Iceberg holds them as ordered floats,
//! for which -0.0 equals 0.0 (a list of both keeps one), while Arrow's
//! kernels (Iceberg's row filter, DataFusion) tell the two apart and order
//! -0.0 first. A zero is therefore widened to both zeros, and NaN is not
//! translated (see [`widened_zero`]). Nor are order comparisons of floats:
//! DataFusion puts NaN above every number, Iceberg's statistics leave NaN
//! out of a file's bounds, so `v > 1.0` would skip a file of NaNs.
//!
//! Nor is a condition on a column with an `initial-default` (pyiceberg sets
//! one): files older than the column hold none of it, and Iceberg's pruning
//! takes them for files of NULLs, where the reader fills the default.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, InListExpr, Literal};
use datafusion::physical_expr_common::physical_expr::snapshot_physical_expr;
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::{Datum, PrimitiveLiteral};

/// Values up to which the reader's predicate keeps an `IN` list as a list;
/// a longer one becomes its least and greatest value.
const MAX_READ_LISTED: usize = 8;

/// The Iceberg predicate implied by `filters` (their current values, for
/// dynamic ones) over a scan emitting `schema`, whose columns are named as
/// in the table; None when nothing translates. `IN` lists are kept whole:
/// this is the predicate that plans the scan (see the module's doc).
pub fn iceberg_predicate(
    filters: &[Arc<dyn PhysicalExpr>],
    schema: &Schema,
    defaulted: &[String],
) -> Option<Predicate> {
    translate(filters, &Columns { schema, defaulted }, usize::MAX)
}

/// The predicate the Parquet reader of the same scan gets: as
/// [`iceberg_predicate`], with lists of more than [`MAX_READ_LISTED`]
/// values turned into their range.
pub fn reading_predicate(
    filters: &[Arc<dyn PhysicalExpr>],
    schema: &Schema,
    defaulted: &[String],
) -> Option<Predicate> {
    translate(filters, &Columns { schema, defaulted }, MAX_READ_LISTED)
}

/// The top-level columns of `schema` with an `initial-default`: conditions
/// on them are not translated (see the module's doc).
pub fn defaulted_columns(schema: &iceberg::spec::Schema) -> Vec<String> {
    schema
        .as_struct()
        .fields()
        .iter()
        .filter(|f| f.initial_default.is_some())
        .map(|f| f.name.clone())
        .collect()
}

/// The scan's columns, and those of them not to translate conditions on.
struct Columns<'a> {
    schema: &'a Schema,
    defaulted: &'a [String],
}

fn translate(
    filters: &[Arc<dyn PhysicalExpr>],
    schema: &Columns,
    max_listed: usize,
) -> Option<Predicate> {
    let mut conjuncts = Vec::new();
    for filter in filters {
        let Ok(current) = snapshot_physical_expr(filter.clone()) else {
            continue;
        };
        collect(&current, schema, max_listed, &mut conjuncts);
    }
    conjuncts.into_iter().reduce(Predicate::and)
}

fn collect(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Columns,
    max_listed: usize,
    out: &mut Vec<Predicate>,
) {
    let any = expr.as_any();
    if let Some(binary) = any.downcast_ref::<BinaryExpr>() {
        if *binary.op() == Operator::And {
            collect(binary.left(), schema, max_listed, out);
            collect(binary.right(), schema, max_listed, out);
        } else if let Some(p) = comparison(binary, schema) {
            out.push(p);
        }
    } else if let Some(list) = any.downcast_ref::<InListExpr>() {
        if list.negated() {
            return;
        }
        let Some((name, data_type)) = column(list.expr(), schema) else {
            return;
        };
        let Some(scalars) = list
            .list()
            .iter()
            .map(|v| literal(v).and_then(|s| s.cast_to(data_type).ok()))
            .collect::<Option<Vec<ScalarValue>>>()
        else {
            return;
        };
        let kinds: Vec<Float> = scalars.iter().map(float).collect();
        if kinds.contains(&Float::NaN) {
            return;
        }
        let values: Option<Vec<Datum>> = scalars.iter().map(datum).collect();
        // A list holding a zero is read as its range, zeros widened.
        let max_listed = if kinds.contains(&Float::Zero) {
            0
        } else {
            max_listed
        };
        match values {
            Some(values) if values.len() > max_listed => {
                // Values that do not all compare give no range: the list is
                // dropped, which only widens the predicate.
                if let Some((least, greatest)) = span(&values) {
                    let least = widened_zero(least, Operator::GtEq).unwrap_or(least.clone());
                    let greatest =
                        widened_zero(greatest, Operator::LtEq).unwrap_or(greatest.clone());
                    out.push(Reference::new(name).greater_than_or_equal_to(least));
                    out.push(Reference::new(name).less_than_or_equal_to(greatest));
                }
            }
            Some(values) => out.push(Reference::new(name).is_in(values)),
            None => {}
        }
    }
}

/// The least and greatest of `values`; None when two do not compare.
fn span(values: &[Datum]) -> Option<(&Datum, &Datum)> {
    let (first, rest) = values.split_first()?;
    rest.iter()
        .try_fold((first, first), |(least, greatest), v| {
            Some((
                match v.partial_cmp(least)? {
                    Ordering::Less => v,
                    _ => least,
                },
                match v.partial_cmp(greatest)? {
                    Ordering::Greater => v,
                    _ => greatest,
                },
            ))
        })
}

/// `column <cmp> literal`, either way round.
fn comparison(binary: &BinaryExpr, schema: &Columns) -> Option<Predicate> {
    let (col, value, op) = match (column(binary.left(), schema), literal(binary.right())) {
        (Some(c), Some(v)) => (c, v, *binary.op()),
        _ => (
            column(binary.right(), schema)?,
            literal(binary.left())?,
            binary.op().swap()?,
        ),
    };
    let (name, data_type) = col;
    let value = value.cast_to(data_type).ok()?;
    let kind = float(&value);
    let value = datum(&value)?;
    let reference = Reference::new(name);
    match kind {
        Float::NaN => return None,
        Float::Zero => {
            let lower = widened_zero(&value, Operator::GtEq)?;
            let upper = widened_zero(&value, Operator::LtEq)?;
            return (op == Operator::Eq).then(|| {
                reference
                    .clone()
                    .greater_than_or_equal_to(lower)
                    .and(reference.less_than_or_equal_to(upper))
            });
        }
        Float::Other if data_type.is_floating() && op != Operator::Eq => return None,
        Float::Other => {}
    }
    Some(match op {
        Operator::Eq => reference.equal_to(value),
        Operator::Lt => reference.less_than(value),
        Operator::LtEq => reference.less_than_or_equal_to(value),
        Operator::Gt => reference.greater_than(value),
        Operator::GtEq => reference.greater_than_or_equal_to(value),
        _ => return None,
    })
}

fn column<'a>(
    expr: &Arc<dyn PhysicalExpr>,
    columns: &Columns<'a>,
) -> Option<(&'a str, &'a DataType)> {
    let column = expr.as_any().downcast_ref::<Column>()?;
    let field = columns.schema.fields().get(column.index())?;
    let defaulted = columns.defaulted.iter().any(|d| d == field.name());
    (field.name() == column.name() && !defaulted)
        .then(|| (field.name().as_str(), field.data_type()))
}

fn literal(expr: &Arc<dyn PhysicalExpr>) -> Option<ScalarValue> {
    let value = expr.as_any().downcast_ref::<Literal>()?.value();
    (!value.is_null()).then(|| value.clone())
}

/// What a literal is, for the translation of floating-point ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Float {
    /// 0.0 or -0.0.
    Zero,
    NaN,
    /// Any other value, floating-point or not.
    Other,
}

fn float(value: &ScalarValue) -> Float {
    let v = match value {
        ScalarValue::Float32(Some(v)) => f64::from(*v),
        ScalarValue::Float64(Some(v)) => *v,
        _ => return Float::Other,
    };
    if v.is_nan() {
        Float::NaN
    } else if v == 0.0 {
        Float::Zero
    } else {
        Float::Other
    }
}

/// For a floating-point zero, the bound that takes in both zeros on the side
/// `op` (`>=`: -0.0, `<=`: 0.0), which under either notion of float order
/// keeps every row the filter keeps; None for any other datum.
fn widened_zero(value: &Datum, op: Operator) -> Option<Datum> {
    let sign = if op == Operator::GtEq { -0.0 } else { 0.0 };
    match value.literal() {
        PrimitiveLiteral::Double(v) if v.0 == 0.0 => Some(Datum::double(sign)),
        PrimitiveLiteral::Float(v) if v.0 == 0.0 => Some(Datum::float(sign as f32)),
        _ => None,
    }
}

/// `value`, already cast to the column's type (the scan's Arrow type is the
/// table's Iceberg type), as a datum; None for a type Iceberg's predicates
/// are not given here.
fn datum(value: &ScalarValue) -> Option<Datum> {
    Some(match value {
        ScalarValue::Boolean(Some(v)) => Datum::bool(*v),
        ScalarValue::Int32(Some(v)) => Datum::int(*v),
        ScalarValue::Int64(Some(v)) => Datum::long(*v),
        ScalarValue::Float32(Some(v)) => Datum::float(*v),
        ScalarValue::Float64(Some(v)) => Datum::double(*v),
        ScalarValue::Utf8(Some(v))
        | ScalarValue::LargeUtf8(Some(v))
        | ScalarValue::Utf8View(Some(v)) => Datum::string(v),
        ScalarValue::Date32(Some(v)) => Datum::date(*v),
        ScalarValue::TimestampMicrosecond(Some(v), None) => Datum::timestamp_micros(*v),
        ScalarValue::TimestampMicrosecond(Some(v), Some(_)) => Datum::timestamptz_micros(*v),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, TimeUnit};
    use datafusion::physical_expr::expressions::{in_list, lit};

    #[test]
    fn comparisons_and_lists_translate_others_drop() {
        let schema = Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            Field::new("v", DataType::Float64, true),
        ]);
        let k: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let t: Arc<dyn PhysicalExpr> = Arc::new(Column::new("t", 1));
        let v: Arc<dyn PhysicalExpr> = Arc::new(Column::new("v", 2));
        let and =
            |l, r| -> Arc<dyn PhysicalExpr> { Arc::new(BinaryExpr::new(l, Operator::And, r)) };
        let cmp = |l, op, r| -> Arc<dyn PhysicalExpr> { Arc::new(BinaryExpr::new(l, op, r)) };
        let listed =
            in_list(k.clone(), vec![lit(3_i64), lit(5_i64)], &false, &schema).expect("in list");
        let filter = and(
            and(
                listed,
                cmp(
                    t.clone(),
                    Operator::LtEq,
                    lit(ScalarValue::TimestampMicrosecond(Some(7), None)),
                ),
            ),
            // Not a column against a literal: dropped.
            cmp(
                cmp(v.clone(), Operator::Plus, lit(1.0)),
                Operator::Gt,
                lit(2.0),
            ),
        );
        let predicate = iceberg_predicate(&[filter], &schema, &[]).expect("predicate");
        let text = predicate.to_string();
        assert!(text.contains("k IN"), "{text}");
        assert!(text.contains("t <="), "{text}");
        assert!(!text.contains('v'), "{text}");
        // Literal first: the comparison is turned round.
        let flipped = cmp(lit(10_i64), Operator::Gt, k);
        let text = iceberg_predicate(&[flipped], &schema, &[])
            .expect("predicate")
            .to_string();
        assert!(text.contains("k < 10"), "{text}");
    }

    #[test]
    fn the_reader_gets_a_long_list_as_its_range() {
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, false)]);
        let k: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let list = |n: i64| {
            let values = (0..n).map(|v| lit(v * 3 + 5)).collect();
            in_list(k.clone(), values, &false, &schema).expect("in list")
        };
        let short = list(MAX_READ_LISTED as i64);
        let text = reading_predicate(std::slice::from_ref(&short), &schema, &[])
            .expect("predicate")
            .to_string();
        assert!(text.contains("k IN"), "{text}");
        assert_eq!(
            reading_predicate(std::slice::from_ref(&short), &schema, &[]),
            iceberg_predicate(&[short], &schema, &[])
        );
        let long = list(100);
        let text = reading_predicate(std::slice::from_ref(&long), &schema, &[])
            .expect("predicate")
            .to_string();
        assert!(!text.contains("IN"), "{text}");
        assert!(
            text.contains("k >= 5") && text.contains("k <= 302"),
            "{text}"
        );
        let text = iceberg_predicate(&[long], &schema, &[])
            .expect("predicate")
            .to_string();
        assert!(text.contains("k IN"), "{text}");
    }
    #[test]
    fn float_zeros_widen_to_both_and_nan_is_not_translated() {
        let schema = Schema::new(vec![Field::new("v", DataType::Float64, true)]);
        let v: Arc<dyn PhysicalExpr> = Arc::new(Column::new("v", 0));
        let list = |values: Vec<f64>| {
            let values = values.into_iter().map(lit).collect();
            in_list(v.clone(), values, &false, &schema).expect("in list")
        };
        let bounds = |p: Option<Predicate>| -> Vec<(String, f64)> {
            let mut out = Vec::new();
            let mut stack = vec![p.expect("predicate")];
            while let Some(p) = stack.pop() {
                match p {
                    Predicate::And(and) => stack.extend(and.inputs().iter().map(|p| (*p).clone())),
                    Predicate::Binary(b) => match b.literal().literal() {
                        PrimitiveLiteral::Double(d) => out.push((format!("{:?}", b.op()), d.0)),
                        other => panic!("{other:?}"),
                    },
                    other => panic!("not a bound: {other}"),
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        };
        // Iceberg's set of datums would keep one of the two zeros.
        for filter in [list(vec![0.0, -0.0]), list(vec![-0.0, 0.0])] {
            for p in [
                iceberg_predicate(std::slice::from_ref(&filter), &schema, &[]),
                reading_predicate(std::slice::from_ref(&filter), &schema, &[]),
            ] {
                let b = bounds(p);
                assert_eq!(b.len(), 2, "{b:?}");
                assert!(b[0].1 == 0.0 && b[0].1.is_sign_negative(), "{b:?}");
                assert!(b[1].1 == 0.0 && b[1].1.is_sign_positive(), "{b:?}");
            }
        }
        // A zero with other values: their range, the zero on its side widened.
        let b = bounds(reading_predicate(&[list(vec![-0.0, -3.0])], &schema, &[]));
        assert_eq!(b[0].1, -3.0, "{b:?}");
        assert!(b[1].1 == 0.0 && b[1].1.is_sign_positive(), "{b:?}");
        // Comparisons with a zero take in both zeros.
        let cmp = |op, value: f64| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(v.clone(), op, lit(value)))
        };
        let b = bounds(iceberg_predicate(&[cmp(Operator::Eq, 0.0)], &schema, &[]));
        assert!(
            b[0].1.is_sign_negative() && b[1].1.is_sign_positive(),
            "{b:?}"
        );
        // Order comparisons of floats are not translated: NaN is above
        // every number to DataFusion and outside a file's bounds to Iceberg.
        for op in [Operator::Lt, Operator::LtEq, Operator::Gt, Operator::GtEq] {
            for value in [0.0, -0.0, 1.5] {
                assert!(
                    iceberg_predicate(&[cmp(op, value)], &schema, &[]).is_none(),
                    "{op} {value}"
                );
            }
        }
        // NaN is not translated; other values are as they were.
        assert!(iceberg_predicate(&[list(vec![1.0, f64::NAN])], &schema, &[]).is_none());
        assert!(iceberg_predicate(&[cmp(Operator::LtEq, f64::NAN)], &schema, &[]).is_none());
        let text = reading_predicate(&[list(vec![1.5, 2.5])], &schema, &[])
            .expect("predicate")
            .to_string();
        assert!(text.contains("v IN"), "{text}");
        // A column with an initial default is not translated at all.
        let defaulted = ["v".to_string()];
        assert!(iceberg_predicate(&[list(vec![1.5, 2.5])], &schema, &defaulted).is_none());
        assert!(iceberg_predicate(&[cmp(Operator::Eq, 1.5)], &schema, &defaulted).is_none());
    }
}
