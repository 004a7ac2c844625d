//! Match values as ordered `i64`s, so one binary search serves every type.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, UInt64Type};

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
    let err = |e: arrow::error::ArrowError| Error::arrow("ASOF JOIN match value")(e);
    match array.data_type() {
        // Both sides share one decimal type, so unscaled values order alike.
        DataType::Decimal128(_, _) => {
            let decimals = array.as_primitive::<Decimal128Type>();
            let values = decimals
                .iter()
                .map(|v| v.unwrap_or(0))
                .map(|v| {
                    i64::try_from(v).map_err(|_| {
                        Error::Invalid(format!(
                            "ASOF JOIN match value of type {}: unscaled value {v} has more than the 18 digits a decimal match value may have",
                            decimals.data_type()
                        ))
                    })
                })
                .collect::<Result<Vec<i64>>>()?;
            Ok(Ordered {
                values: values.into(),
                nulls: decimals.nulls().cloned(),
            })
        }
        // Flipping the sign bit keeps the order of the whole u64 range.
        DataType::UInt64 => {
            let ints = array.as_primitive::<UInt64Type>();
            Ok(Ordered {
                values: ints
                    .values()
                    .iter()
                    .map(|v| (*v as i64) ^ i64::MIN)
                    .collect(),
                nulls: ints.nulls().cloned(),
            })
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
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

/// Maps an `f64` to an `i64` with SQL's order: -0.0 equals 0.0, and NaN
/// (of either sign) equals NaN and sorts above every number.
fn float_key(v: f64) -> i64 {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    let bits = v.to_bits() as i64;
    if bits < 0 { bits ^ i64::MAX } else { bits }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Decimal128Array, UInt64Array};

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

    #[test]
    fn floats_compare_as_sql_does() {
        assert_eq!(float_key(-0.0), float_key(0.0));
        assert_eq!(float_key(-f64::NAN), float_key(f64::NAN));
        assert!(float_key(-f64::NAN) > float_key(f64::INFINITY));
    }

    #[test]
    fn unsigned_and_decimal_values_keep_their_order() {
        let unsigned: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX, 0, 1 << 63, 5]));
        let keys: Vec<i64> = ordered_i64(&unsigned)
            .expect("u64")
            .iter()
            .flatten()
            .collect();
        assert!(keys[1] < keys[3] && keys[3] < keys[2] && keys[2] < keys[0]);
        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![
                Some(100_000_000_000_000_001),
                None,
                Some(100_000_000_000_000_000),
            ])
            .with_precision_and_scale(18, 2)
            .expect("decimal"),
        );
        let keys: Vec<Option<i64>> = ordered_i64(&decimals).expect("decimal").iter().collect();
        assert_eq!(
            keys,
            [
                Some(100_000_000_000_000_001),
                None,
                Some(100_000_000_000_000_000)
            ]
        );
        let wide: ArrayRef = Arc::new(
            Decimal128Array::from(vec![i128::from(i64::MAX) + 1])
                .with_precision_and_scale(38, 0)
                .expect("decimal"),
        );
        assert!(ordered_i64(&wide).is_err());
    }
}
