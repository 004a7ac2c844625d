//! Making incoming rows fit a table: cast each column to the table's type and
//! reject, with the first offending row, anything that does not fit.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options, is_not_null};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::catalog::types::sql_type_name;
use crate::error::{Error, Result};

/// What a write must respect besides column types.
#[derive(Debug, Clone)]
pub struct Target {
    /// `schema.table`, for messages.
    pub table: String,
    /// The table's columns (with Iceberg field ids), in table order.
    pub schema: SchemaRef,
    /// Per column: NULL is rejected (a NOT NULL column, an entity key, the event time).
    pub required: Vec<bool>,
    /// Per column: why NULL is rejected, for the message.
    pub required_reason: Vec<&'static str>,
}

/// Casts `batch` (columns in table order) to the table's types.
///
/// `first_row` is the 1-based number of the batch's first row in the whole
/// input, so errors point at the row the user wrote.
pub fn conform(target: &Target, batch: &RecordBatch, first_row: usize) -> Result<RecordBatch> {
    if batch.num_columns() != target.schema.fields().len() {
        return Err(Error::BadInput {
            table: target.table.clone(),
            reason: format!(
                "{} columns given, the table has {}",
                batch.num_columns(),
                target.schema.fields().len()
            ),
        });
    }
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (i, field) in target.schema.fields().iter().enumerate() {
        let source = batch.column(i);
        let cast =
            cast_with_options(source, field.data_type(), &safe).map_err(|e| Error::BadInput {
                table: target.table.clone(),
                reason: format!(
                    "column {}: cannot convert {} to {}: {e}",
                    field.name(),
                    source.data_type(),
                    sql_type_name(field.data_type())
                ),
            })?;
        if cast.logical_null_count() > source.logical_null_count() {
            // A value the cast turned into NULL did not fit.
            let row = first_row_where(source, &cast, |s, c| s && !c);
            let value = display_value(source, row);
            return Err(Error::BadRow {
                table: target.table.clone(),
                column: field.name().clone(),
                row: first_row + row,
                reason: format!(
                    "value {value} does not fit type {}",
                    sql_type_name(field.data_type())
                ),
            });
        }
        if let Some(row) = lost_fraction(source, &cast) {
            return Err(Error::BadRow {
                table: target.table.clone(),
                column: field.name().clone(),
                row: first_row + row,
                reason: format!(
                    "value {} does not fit type {} without losing its fraction",
                    display_value(source, row),
                    sql_type_name(field.data_type())
                ),
            });
        }
        if target.required[i] && cast.logical_null_count() > 0 {
            let row = first_row_where(&cast, &cast, |present, _| !present);
            return Err(Error::BadRow {
                table: target.table.clone(),
                column: field.name().clone(),
                row: first_row + row,
                reason: format!("NULL is not allowed: {}", target.required_reason[i]),
            });
        }
        columns.push(cast);
    }
    RecordBatch::try_new(target.schema.clone(), columns).map_err(|e| Error::BadInput {
        table: target.table.clone(),
        reason: e.to_string(),
    })
}

/// The first row where `pred(source is non-null, cast is non-null)` holds.
fn first_row_where(source: &ArrayRef, cast: &ArrayRef, pred: impl Fn(bool, bool) -> bool) -> usize {
    // Logical nulls: a NullArray (an all-NULL VALUES column) has no null buffer.
    let (source_nulls, cast_nulls) = (source.logical_nulls(), cast.logical_nulls());
    let present =
        |nulls: &Option<arrow::buffer::NullBuffer>, i| nulls.as_ref().is_none_or(|n| n.is_valid(i));
    (0..source.len())
        .find(|&i| pred(present(&source_nulls, i), present(&cast_nulls, i)))
        .unwrap_or(0)
}

/// Floating-point values cast to an integer column must be whole numbers.
fn lost_fraction(source: &ArrayRef, cast: &ArrayRef) -> Option<usize> {
    if !matches!(source.data_type(), DataType::Float32 | DataType::Float64)
        || !cast.data_type().is_integer()
    {
        return None;
    }
    let as_float = cast_with_options(source, &DataType::Float64, &CastOptions::default()).ok()?;
    let floats = as_float
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()?;
    let present = is_not_null(floats).ok()?;
    (0..floats.len()).find(|&i| present.value(i) && floats.value(i).fract() != 0.0)
}

fn display_value(array: &ArrayRef, row: usize) -> String {
    let options = FormatOptions::default();
    match ArrayFormatter::try_new(array.as_ref(), &options) {
        Ok(f) => {
            let text = f.value(row).to_string();
            if matches!(
                array.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                format!("'{text}'")
            } else {
                text
            }
        }
        Err(_) => "?".to_string(),
    }
}

/// Reorders `batch`'s columns by name to the target's order; a column that
/// may be NULL and is not given is all NULL (a producer written before the
/// column was added keeps working). `what` names the input in messages
/// ("file x.parquet").
pub fn by_name(target: &Target, batch: &RecordBatch, what: &str) -> Result<RecordBatch> {
    let schema = batch.schema();
    let missing: Vec<&str> = target
        .schema
        .fields()
        .iter()
        .zip(&target.required)
        .filter(|(f, required)| **required && schema.index_of(f.name()).is_err())
        .map(|(f, _)| f.name().as_str())
        .collect();
    let extra: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| target.schema.index_of(name).is_err())
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut reason = Vec::new();
        if !missing.is_empty() {
            reason.push(format!("{what} lacks column(s) {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            reason.push(format!(
                "{what} has column(s) the table does not: {}",
                extra.join(", ")
            ));
        }
        return Err(Error::BadInput {
            table: target.table.clone(),
            reason: reason.join("; "),
        });
    }
    let columns: Vec<ArrayRef> = target
        .schema
        .fields()
        .iter()
        .map(|f| match schema.index_of(f.name()) {
            Ok(at) => Arc::clone(batch.column(at)),
            Err(_) => arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    let fields: Vec<_> = target
        .schema
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| arrow::datatypes::Field::new(f.name(), c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).map_err(|e| {
        Error::BadInput {
            table: target.table.clone(),
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn target() -> Target {
        Target {
            table: "s.t".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new("k", DataType::Utf8, false),
                Field::new("v", DataType::Int64, true),
            ])),
            required: vec![true, false],
            required_reason: vec!["k is the entity key", ""],
        }
    }

    fn input(keys: Vec<Option<&str>>, values: Vec<Option<&str>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(StringArray::from(values)),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn casts_to_table_types() {
        let out = conform(&target(), &input(vec![Some("a")], vec![Some("42")]), 1).expect("fits");
        let v = out
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64");
        assert_eq!(v.value(0), 42);
    }

    #[test]
    fn names_first_value_that_does_not_fit() {
        let batch = input(
            vec![Some("a"), Some("b"), Some("c")],
            vec![Some("1"), Some("x"), Some("y")],
        );
        let err = conform(&target(), &batch, 11)
            .expect_err("bad value")
            .to_string();
        assert_eq!(
            err,
            "cannot write to s.t: column v, row 12: value 'x' does not fit type BIGINT"
        );
    }

    #[test]
    fn names_first_null_key() {
        let batch = input(vec![Some("a"), None], vec![None, None]);
        let err = conform(&target(), &batch, 1)
            .expect_err("null key")
            .to_string();
        assert_eq!(
            err,
            "cannot write to s.t: column k, row 2: NULL is not allowed: k is the entity key"
        );
    }
}
