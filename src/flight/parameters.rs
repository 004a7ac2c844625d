//! Values bound to a prepared statement, checked against what the statement
//! takes: as many as it has parameters, each converted to the parameter's
//! type. A value that does not convert is the client's mistake, named as
//! such, instead of failing later (or not at all) deep in the query.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_empty_array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use tonic::Status;

/// `params` made to fit parameters of `types` (`$1` first; `None`: any type).
/// Refuses too many or too few values, and values that do not convert.
pub fn conform(
    params: Option<RecordBatch>,
    types: &[Option<DataType>],
) -> Result<Option<RecordBatch>, Status> {
    let given = params.as_ref().map_or(0, RecordBatch::num_columns);
    if given != types.len() {
        return Err(Status::invalid_argument(format!(
            "the statement takes {} but {} bound",
            parameters(types.len()),
            match given {
                0 => "none were".to_string(),
                1 => "1 value was".to_string(),
                n => format!("{n} values were"),
            }
        )));
    }
    let Some(params) = params.filter(|p| p.num_columns() > 0) else {
        return Ok(None);
    };
    let mut fields = Vec::with_capacity(types.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(types.len());
    for (i, (column, expected)) in params.columns().iter().zip(types).enumerate() {
        let name = format!("${}", i + 1);
        let Some(expected) = expected else {
            fields.push(Field::new(&name, column.data_type().clone(), true));
            columns.push(Arc::clone(column));
            continue;
        };
        let values = (0..column.len())
            .map(|row| {
                let value = ScalarValue::try_from_array(column, row)
                    .map_err(|e| Status::invalid_argument(format!("parameter {name}: {e}")))?;
                convert(&name, value, expected)
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let array = if values.is_empty() {
            new_empty_array(expected)
        } else {
            ScalarValue::iter_to_array(values)
                .map_err(|e| Status::invalid_argument(format!("parameter {name}: {e}")))?
        };
        fields.push(Field::new(&name, expected.clone(), true));
        columns.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(params.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("parameters: {e}")))
}

/// "1 parameter ($1)", "3 parameters ($1 to $3)", "no parameters".
fn parameters(n: usize) -> String {
    match n {
        0 => "no parameters".into(),
        1 => "1 parameter ($1)".into(),
        n => format!("{n} parameters ($1 to ${n})"),
    }
}

/// `value` as a value of `expected`, or the error that names both.
fn convert(name: &str, value: ScalarValue, expected: &DataType) -> Result<ScalarValue, Status> {
    // Clients that bind untyped values (flightsql-dbapi) send dense unions.
    let value = match value {
        ScalarValue::Union(Some((_, inner)), _, _) => *inner,
        ScalarValue::Union(None, _, _) => ScalarValue::Null,
        other => other,
    };
    if value.is_null() {
        return ScalarValue::try_from(expected)
            .map_err(|e| Status::invalid_argument(format!("parameter {name}: {e}")));
    }
    if &value.data_type() == expected {
        return Ok(value);
    }
    let refuse = || {
        Status::invalid_argument(format!(
            "parameter {name} is {expected}, and {} ({}) does not convert to it",
            shown(&value),
            value.data_type()
        ))
    };
    // A cast to an integer would cut a fraction off without a word.
    if expected.is_integer() && has_fraction(&value) {
        return Err(refuse());
    }
    // TRUE is not the number 1, nor 1 TRUE: the literals do not compare.
    let boolean = |t: &DataType| t == &DataType::Boolean;
    if boolean(&value.data_type()) != boolean(expected)
        && (value.data_type().is_numeric() || expected.is_numeric())
    {
        return Err(refuse());
    }
    match value.cast_to(expected) {
        // A cast to a decimal of fewer places rounds without a word: 1.251
        // bound to DECIMAL(10, 2) would match 1.25, which `= 1.251` does not.
        Ok(converted)
            if expected.is_decimal()
                && value.data_type().is_numeric()
                && converted.cast_to(&value.data_type()).ok().as_ref() != Some(&value) =>
        {
            Err(refuse())
        }
        Ok(converted) if !converted.is_null() => Ok(converted),
        _ => Err(refuse()),
    }
}

fn has_fraction(value: &ScalarValue) -> bool {
    match value {
        ScalarValue::Float16(Some(f)) => f.to_f64().fract() != 0.0 || !f.is_finite(),
        ScalarValue::Float32(Some(f)) => f.fract() != 0.0 || !f.is_finite(),
        ScalarValue::Float64(Some(f)) => f.fract() != 0.0 || !f.is_finite(),
        ScalarValue::Decimal128(Some(v), _, scale) if *scale > 0 => 10i128
            .checked_pow(u32::from(scale.unsigned_abs()))
            .is_none_or(|unit| v % unit != 0),
        _ => false,
    }
}

/// A value as an error message shows it: text quoted, long text cut short.
fn shown(value: &ScalarValue) -> String {
    const LONGEST: usize = 40;
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            if s.chars().count() > LONGEST {
                format!("'{}…'", s.chars().take(LONGEST).collect::<String>())
            } else {
                format!("'{s}'")
            }
        }
        other => {
            // As Arrow prints it: a decimal with its point, not its digits
            // and scale.
            let text = other
                .to_array()
                .ok()
                .and_then(|a| arrow::util::display::array_value_to_string(&a, 0).ok())
                .unwrap_or_else(|| other.to_string());
            if text.chars().count() > LONGEST {
                format!("{}…", text.chars().take(LONGEST).collect::<String>())
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use tonic::Code;

    fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("{i}"), c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
    }

    fn refused(params: Option<RecordBatch>, types: &[Option<DataType>]) -> String {
        let err = conform(params, types).expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        err.message().to_string()
    }

    #[test]
    fn values_convert_to_the_parameter_types() {
        let params = batch(vec![
            Arc::new(StringArray::from(vec!["42"])),
            Arc::new(Float64Array::from(vec![7.0])),
            Arc::new(Int64Array::from(vec![3])),
        ]);
        let types = [Some(DataType::Int64), Some(DataType::Int64), None];
        let out = conform(Some(params), &types)
            .expect("converts")
            .expect("some");
        assert_eq!(out.schema().field(0).name(), "$1");
        assert_eq!(out.column(0).data_type(), &DataType::Int64);
        assert_eq!(out.column(1).data_type(), &DataType::Int64);
        assert_eq!(out.column(2).data_type(), &DataType::Int64);
    }

    #[test]
    fn numbers_rounded_to_a_decimal_parameter_are_refused() {
        let decimal = |v: i128, scale: i8| -> ArrayRef {
            Arc::new(
                arrow::array::Decimal128Array::from(vec![v])
                    .with_precision_and_scale(10, scale)
                    .expect("decimal"),
            )
        };
        let two_places = [Some(DataType::Decimal128(10, 2))];
        for (column, shown) in [
            (decimal(1251, 3), "1.251 (Decimal128(10, 3))"),
            (
                Arc::new(Float64Array::from(vec![1.251])) as ArrayRef,
                "1.251 (Float64)",
            ),
        ] {
            let text = refused(Some(batch(vec![column])), &two_places);
            assert_eq!(
                text,
                format!("parameter $1 is Decimal128(10, 2), and {shown} does not convert to it")
            );
        }
        for column in [
            decimal(1250, 3),
            Arc::new(Float64Array::from(vec![1.25])) as ArrayRef,
            Arc::new(Int64Array::from(vec![7])) as ArrayRef,
            Arc::new(StringArray::from(vec!["1.5"])) as ArrayRef,
        ] {
            let out = conform(Some(batch(vec![column])), &two_places)
                .expect("converts")
                .expect("some");
            assert_eq!(out.column(0).data_type(), &DataType::Decimal128(10, 2));
        }
    }

    #[test]
    fn booleans_and_numbers_do_not_convert_into_each_other() {
        let text = refused(
            Some(batch(vec![Arc::new(arrow::array::BooleanArray::from(
                vec![true],
            ))])),
            &[Some(DataType::Int64)],
        );
        assert_eq!(
            text,
            "parameter $1 is Int64, and true (Boolean) does not convert to it"
        );
        let text = refused(
            Some(batch(vec![Arc::new(Int64Array::from(vec![1]))])),
            &[Some(DataType::Boolean)],
        );
        assert_eq!(
            text,
            "parameter $1 is Boolean, and 1 (Int64) does not convert to it"
        );
        // Text still converts (clients that bind everything as text).
        let out = conform(
            Some(batch(vec![Arc::new(StringArray::from(vec!["true"]))])),
            &[Some(DataType::Boolean)],
        )
        .expect("converts")
        .expect("some");
        assert_eq!(out.column(0).data_type(), &DataType::Boolean);
    }

    #[test]
    fn values_that_do_not_convert_are_named() {
        let text = refused(
            Some(batch(vec![Arc::new(StringArray::from(vec!["abc"]))])),
            &[Some(DataType::Int64)],
        );
        assert_eq!(
            text,
            "parameter $1 is Int64, and 'abc' (Utf8) does not convert to it"
        );
        let text = refused(
            Some(batch(vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(Float64Array::from(vec![1.5])),
            ])),
            &[None, Some(DataType::Int64)],
        );
        assert_eq!(
            text,
            "parameter $2 is Int64, and 1.5 (Float64) does not convert to it"
        );
    }

    #[test]
    fn counts_must_match() {
        let one = || Some(batch(vec![Arc::new(Int64Array::from(vec![1]))]));
        assert_eq!(
            refused(one(), &[]),
            "the statement takes no parameters but 1 value was bound"
        );
        assert_eq!(
            refused(one(), &[None, None]),
            "the statement takes 2 parameters ($1 to $2) but 1 value was bound"
        );
        assert_eq!(
            refused(None, &[Some(DataType::Int64)]),
            "the statement takes 1 parameter ($1) but none were bound"
        );
        assert!(conform(None, &[]).expect("none").is_none());
    }
}
