//! Vector functions over embeddings (`ARRAY<FLOAT>` / `ARRAY<DOUBLE>`
//! columns, or array literals): `cosine_distance`, `l2_distance` and
//! `inner_product`, to rank rows (online or offline) by similarity.
//!
//! Each takes two vectors of the same length and answers a DOUBLE; NULL when
//! either vector is NULL or holds a NULL, and for `cosine_distance` when
//! either has no length (a zero vector has no direction). Vectors of
//! different lengths are an error naming both lengths.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Float64Builder};
use arrow::datatypes::{DataType, Field};
use datafusion::common::{Result as DFResult, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The three vector functions, to register in a session.
pub fn vector_functions() -> Vec<ScalarUDF> {
    [Metric::Cosine, Metric::L2, Metric::Inner]
        .into_iter()
        .map(|metric| {
            ScalarUDF::new_from_impl(VectorFunction {
                metric,
                signature: Signature::any(2, Volatility::Immutable),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Metric {
    Cosine,
    L2,
    Inner,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine_distance",
            Metric::L2 => "l2_distance",
            Metric::Inner => "inner_product",
        }
    }

    fn of(self, a: &[f64], b: &[f64]) -> Option<f64> {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        match self {
            Metric::Inner => Some(dot),
            Metric::L2 => Some(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f64>()
                    .sqrt(),
            ),
            Metric::Cosine => {
                let norms = a.iter().map(|x| x * x).sum::<f64>().sqrt()
                    * b.iter().map(|y| y * y).sum::<f64>().sqrt();
                (norms > 0.0).then(|| 1.0 - dot / norms)
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorFunction {
    metric: Metric,
    signature: Signature,
}

/// The list type every argument is cast to.
fn vector_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

impl ScalarUDFImpl for VectorFunction {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.metric.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DFResult<DataType> {
        for arg in args {
            let numeric_list = match arg {
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                    f.data_type().is_numeric() || f.data_type().is_null()
                }
                DataType::Null => true,
                _ => false,
            };
            if !numeric_list {
                return plan_err!(
                    "{} takes two arrays of numbers (embeddings), not {arg}",
                    self.name()
                );
            }
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let [a, b] = args.args.as_slice() else {
            return exec_err!("{} takes two arrays", self.name());
        };
        let rows = args.number_rows;
        let scalar = matches!((a, b), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let as_vectors = |v: &ColumnarValue| -> DFResult<(ArrayRef, bool)> {
            let (array, one) = match v {
                ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
                ColumnarValue::Array(a) => (a.clone(), false),
            };
            Ok((arrow::compute::cast(&array, &vector_type())?, one))
        };
        let ((a, a_one), (b, b_one)) = (as_vectors(a)?, as_vectors(b)?);
        let (a, b) = (a.as_list::<i32>(), b.as_list::<i32>());
        let rows = if scalar { 1 } else { rows };
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            let (i, j) = (if a_one { 0 } else { row }, if b_one { 0 } else { row });
            if a.is_null(i) || b.is_null(j) {
                out.append_null();
                continue;
            }
            let (x, y) = (a.value(i), b.value(j));
            let (x, y): (&Float64Array, &Float64Array) = (x.as_primitive(), y.as_primitive());
            if x.len() != y.len() {
                return exec_err!(
                    "{}: the vectors have {} and {} values",
                    self.name(),
                    x.len(),
                    y.len()
                );
            }
            if x.null_count() > 0 || y.null_count() > 0 {
                out.append_null();
                continue;
            }
            out.append_option(self.metric.of(x.values(), y.values()));
        }
        let out = out.finish();
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_small_vectors() {
        let (a, b) = ([1.0, 0.0], [0.0, 2.0]);
        assert_eq!(Metric::Inner.of(&a, &b), Some(0.0));
        assert_eq!(Metric::Cosine.of(&a, &b), Some(1.0));
        assert_eq!(Metric::L2.of(&a, &b), Some(5f64.sqrt()));
        assert_eq!(Metric::Cosine.of(&a, &[3.0, 0.0]), Some(0.0));
        assert_eq!(Metric::Cosine.of(&a, &[0.0, 0.0]), None);
    }
}
