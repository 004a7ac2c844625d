//! Match values as ordered `i64`s, so one binary search serves every type.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::error::{Error, Result};

/// A column's values as ordered `i64`s, and which are NULL.
pub struct Ordered {
    values: ScalarBuffer<i64>,
    nulls: Option<NullBuffer>,
}

impl Ordered {
    /// Value `i`, `None` where NULL.
    pub fn get(&self, i: usize) -> Option<i64> {
        match &self.nulls {
            Some(nulls) if nulls.is_null(i) => None,
            _ => Some(self.values[i]),
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = Option<i64>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// The values of a match column (or a maximum-age bound) as `i64`s whose order
/// is the column's order.
///
/// Integers, dates, timestamps and durations are their physical integer (no
/// copy for 64-bit ones); floats map to integers by the IEEE-754 total order
/// (NaN sorts last).
pub fn ordered_i64(array: &ArrayRef) -> Result<Ordered> {
    let err = |e: arrow::error::ArrowError| Error::Invalid(format!("ASOF JOIN match value: {e}"));
    match array.data_type() {
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            let floats = cast(array, &DataType::Float64).map_err(err)?;
            let floats = floats.as_primitive::<Float64Type>();
            Ok(Ordered {
                values: floats.values().iter().map(|v| float_key(*v)).collect(),
                nulls: floats.nulls().cloned(),
            })
        }
        DataType::Null => Ok(Ordered {
            values: ScalarBuffer::from(vec![0; array.len()]),
            nulls: Some(NullBuffer::new_null(array.len())),
        }),
        _ => {
            let ints = cast(array, &DataType::Int64).map_err(err)?;
            let ints = ints.as_primitive::<Int64Type>();
            Ok(Ordered {
                values: ints.values().clone(),
                nulls: ints.nulls().cloned(),
            })
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
