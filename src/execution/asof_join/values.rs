//! Match values as ordered `i64`s, so one binary search serves every type.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::error::{Error, Result};

/// The values of a match column (or a maximum-age bound) as `i64`s whose order
/// is the column's order; `None` where the value is NULL.
///
/// Integers, dates, timestamps and durations are their physical integer;
/// floats map to integers by the IEEE-754 total order (NaN sorts last).
pub fn ordered_i64(array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let err = |e: arrow::error::ArrowError| Error::Invalid(format!("ASOF JOIN match value: {e}"));
    match array.data_type() {
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            let floats = cast(array, &DataType::Float64).map_err(err)?;
            Ok(floats
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map(float_key))
                .collect())
        }
        DataType::Null => Ok(vec![None; array.len()]),
        _ => {
            let ints = cast(array, &DataType::Int64).map_err(err)?;
            Ok(ints.as_primitive::<Int64Type>().iter().collect())
        }
    }
}

/// Maps an `f64` to an `i64` with the same total order.
fn float_key(v: f64) -> i64 {
    let bits = v.to_bits() as i64;
    if bits < 0 { bits ^ i64::MAX } else { bits }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_order_is_kept() {
        let mut values = [3.5, -0.0, 0.0, -2.0, f64::NEG_INFINITY, 1e300, -1e-300];
        let mut keys: Vec<i64> = values.iter().map(|v| float_key(*v)).collect();
        values.sort_by(f64::total_cmp);
        keys.sort();
        let back: Vec<i64> = values.iter().map(|v| float_key(*v)).collect();
        assert_eq!(keys, back);
    }
}
