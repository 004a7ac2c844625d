//! Binding parameters of prepared statements (`$1`, `$2`, … or `?`) by
//! replacing each placeholder in the statement with the literal of its value.
//!
//! Binding in the AST rather than in the plan lets parameters reach every
//! statement, pitlake's own (INSERT, COPY) included.

use std::ops::ControlFlow;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use sqlparser::ast::{CastKind, DataType, Expr, Statement, Value, VisitMut, VisitorMut};

use crate::error::{Error, Result};

/// The number of parameters a statement takes: the highest `$n`, or the count of `?`.
pub fn count_parameters(statement: &mut Statement) -> usize {
    let mut highest = 0usize;
    let mut question_marks = 0usize;
    let _ = visit_placeholders(statement, |name| {
        match name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => highest = highest.max(n),
            None => question_marks += 1,
        }
        Ok(None)
    });
    highest.max(question_marks)
}

/// Rewrites `?` placeholders as `$1`, `$2`, … in order, so planners that
/// name parameters see distinct ones.
pub fn number_placeholders(statement: &mut Statement) {
    let mut next = 0usize;
    let _ = visit_placeholders(statement, |name| {
        if name == "?" {
            next += 1;
            Ok(Some(Expr::value(Value::Placeholder(format!("${next}")))))
        } else {
            Ok(None)
        }
    });
}

/// Replaces every placeholder with the literal of its value. The values must
/// be as many as the statement takes: one too many is as much a mistake as
/// one too few.
pub fn bind_parameters(statement: &mut Statement, values: &[ScalarValue]) -> Result<()> {
    let takes = count_parameters(statement);
    let counts = || {
        format!(
            "the statement takes {takes} parameter{} but {} value{} bound",
            if takes == 1 { "" } else { "s" },
            values.len(),
            if values.len() == 1 { " was" } else { "s were" }
        )
    };
    if values.len() > takes {
        return Err(Error::Invalid(counts()));
    }
    let mut next_question_mark = 0usize;
    visit_placeholders(statement, |name| {
        let index = match name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n >= 1 => n - 1,
            Some(_) => {
                return Err(Error::Invalid(format!(
                    "parameter {name}: numbering starts at $1"
                )));
            }
            None => {
                next_question_mark += 1;
                next_question_mark - 1
            }
        };
        let value = values.get(index).ok_or_else(|| {
            Error::Invalid(format!("parameter {name} has no value: {}", counts()))
        })?;
        literal(value).map(Some)
    })
}

fn visit_placeholders(
    statement: &mut Statement,
    mut replace: impl FnMut(&str) -> Result<Option<Expr>>,
) -> Result<()> {
    struct Visit<'a> {
        replace: &'a mut dyn FnMut(&str) -> Result<Option<Expr>>,
    }
    impl VisitorMut for Visit<'_> {
        type Break = Error;
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
            if let Expr::Value(v) = expr
                && let Value::Placeholder(name) = &v.value
            {
                match (self.replace)(name) {
                    Ok(Some(literal)) => *expr = literal,
                    Ok(None) => {}
                    Err(e) => return ControlFlow::Break(e),
                }
            }
            ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut Visit {
        replace: &mut replace,
    }) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The SQL literal of a value.
fn literal(value: &ScalarValue) -> Result<Expr> {
    if value.is_null() {
        return Ok(Expr::value(Value::Null));
    }
    // Clients that bind untyped values (flightsql-dbapi) send dense unions.
    if let ScalarValue::Union(Some((_, inner)), _, _) = value {
        return literal(inner);
    }
    let text = match value {
        // Dates and times as ISO text (their Display is the raw integer),
        // decimals with their point (theirs is the digits and the scale).
        ScalarValue::Decimal128(_, _, _)
        | ScalarValue::Date32(_)
        | ScalarValue::Date64(_)
        | ScalarValue::TimestampSecond(_, _)
        | ScalarValue::TimestampMillisecond(_, _)
        | ScalarValue::TimestampMicrosecond(_, _)
        | ScalarValue::TimestampNanosecond(_, _) => {
            let array = value.to_array().map_err(Error::from)?;
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
                .map_err(Error::arrow("formatting a parameter"))?;
            formatter.value(0).to_string()
        }
        other => other.to_string(),
    };
    let cast = |data_type: DataType| Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(Expr::value(Value::SingleQuotedString(text.clone()))),
        data_type,
        array: false,
        format: None,
    };
    Ok(match value {
        ScalarValue::Boolean(Some(b)) => Expr::value(Value::Boolean(*b)),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Decimal128(_, _, _) => Expr::value(Value::Number(text, false)),
        ScalarValue::Float32(Some(f)) if f.is_finite() => Expr::value(Value::Number(text, false)),
        ScalarValue::Float64(Some(f)) if f.is_finite() => Expr::value(Value::Number(text, false)),
        ScalarValue::Float32(_) | ScalarValue::Float64(_) => {
            cast(DataType::Double(sqlparser::ast::ExactNumberInfo::None))
        }
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Expr::value(Value::SingleQuotedString(s.clone())),
        ScalarValue::Date32(_) | ScalarValue::Date64(_) => cast(DataType::Date),
        ScalarValue::TimestampSecond(_, _)
        | ScalarValue::TimestampMillisecond(_, _)
        | ScalarValue::TimestampMicrosecond(_, _)
        | ScalarValue::TimestampNanosecond(_, _) => cast(DataType::Timestamp(
            None,
            sqlparser::ast::TimezoneInfo::None,
        )),
        other => {
            return Err(Error::NotSupported(format!(
                "a parameter of type {}",
                other.data_type()
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Statement as PitlakeStatement, parse_sql};

    fn bound(sql: &str, values: &[ScalarValue]) -> String {
        let Some(PitlakeStatement::Sql(mut statement)) = parse_sql(sql).expect("parses").pop()
        else {
            panic!("not SQL");
        };
        bind_parameters(&mut statement, values).expect("binds");
        statement.to_string()
    }

    #[test]
    fn binds_dollar_and_question_mark_placeholders() {
        let values = [
            ScalarValue::Int64(Some(7)),
            ScalarValue::Utf8(Some("it's".into())),
        ];
        assert_eq!(
            bound("SELECT * FROM t WHERE a = $1 AND b = $2 OR a = $1", &values),
            "SELECT * FROM t WHERE a = 7 AND b = 'it''s' OR a = 7"
        );
        assert_eq!(
            bound("INSERT INTO t VALUES (?, ?)", &values),
            "INSERT INTO t VALUES (7, 'it''s')"
        );
    }

    #[test]
    fn binds_timestamps_as_text() {
        let values = [ScalarValue::TimestampMicrosecond(
            Some(1_706_745_600_000_000),
            None,
        )];
        assert_eq!(
            bound("SELECT $1", &values),
            "SELECT CAST('2024-02-01T00:00:00' AS TIMESTAMP)"
        );
    }

    #[test]
    fn binds_decimals_with_their_point() {
        let values = [
            ScalarValue::Decimal128(Some(1250), 4, 3),
            ScalarValue::Decimal128(Some(-5), 10, 2),
        ];
        assert_eq!(bound("SELECT $1, $2", &values), "SELECT 1.250, -0.05");
    }

    #[test]
    fn counts_parameters() {
        let Some(PitlakeStatement::Sql(mut s)) = parse_sql("SELECT $2, $1").expect("parses").pop()
        else {
            panic!("not SQL");
        };
        assert_eq!(count_parameters(&mut s), 2);
    }

    #[test]
    fn missing_values_are_named() {
        let Some(PitlakeStatement::Sql(mut s)) = parse_sql("SELECT $3").expect("parses").pop()
        else {
            panic!("not SQL");
        };
        let err = bind_parameters(&mut s, &[]).expect_err("no value");
        assert!(
            err.to_string()
                .contains("parameter $3 has no value: the statement takes 3 parameters but 0 values were bound"),
            "{err}"
        );
    }

    #[test]
    fn extra_values_are_refused() {
        let Some(PitlakeStatement::Sql(mut s)) = parse_sql("SELECT ?").expect("parses").pop()
        else {
            panic!("not SQL");
        };
        let values = [ScalarValue::Int64(Some(1)), ScalarValue::Int64(Some(2))];
        let err = bind_parameters(&mut s, &values).expect_err("too many");
        assert!(
            err.to_string()
                .contains("the statement takes 1 parameter but 2 values were bound"),
            "{err}"
        );
    }
}
