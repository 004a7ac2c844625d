//! Printing results: aligned tables for people, CSV and JSON for programs, and
//! the plain cell text the SQL examples pin.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};
use crate::session::StatementResult;

/// How `pitlake sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

/// Renders a statement result; statements without columns print `OK`.
pub fn render(result: &StatementResult, format: Format) -> Result<String> {
    if result.schema.fields().is_empty() {
        return Ok("OK\n".to_string());
    }
    let to_err =
        |e: arrow::error::ArrowError| Error::Invalid(format!("cannot print the result: {e}"));
    match format {
        Format::Table => {
            let rows = result.num_rows();
            let table = if rows == 0 {
                let names: Vec<&str> = result
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                names.join(" | ")
            } else {
                let options = FormatOptions::default().with_null("NULL");
                arrow::util::pretty::pretty_format_batches_with_options(&result.batches, &options)
                    .map_err(to_err)?
                    .to_string()
            };
            Ok(format!(
                "{table}\n({rows} row{})\n",
                if rows == 1 { "" } else { "s" }
            ))
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                if result.batches.is_empty() {
                    let empty = RecordBatch::new_empty(result.schema.clone());
                    writer.write(&empty).map_err(to_err)?;
                }
                for batch in &result.batches {
                    writer.write(batch).map_err(to_err)?;
                }
            }
            String::from_utf8(out).map_err(|e| Error::Invalid(e.to_string()))
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::json::ArrayWriter::new(&mut out);
                let batches: Vec<&RecordBatch> = result.batches.iter().collect();
                writer.write_batches(&batches).map_err(to_err)?;
                writer.finish().map_err(to_err)?;
            }
            let mut text = String::from_utf8(out).map_err(|e| Error::Invalid(e.to_string()))?;
            if text.is_empty() {
                text.push_str("[]");
            }
            text.push('\n');
            Ok(text)
        }
    }
}

/// Every cell as text: `NULL` for null, `(empty)` for an empty string, as the
/// sqllogictest files write them.
pub fn cells(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        for row in 0..batch.num_rows() {
            let mut cells = Vec::with_capacity(formatters.len());
            for (formatter, column) in formatters.iter().zip(batch.columns()) {
                let text = formatter.value(row).to_string();
                let is_text = matches!(
                    column.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                );
                cells.push(if is_text && column.is_valid(row) && text.is_empty() {
                    "(empty)".to_string()
                } else {
                    text
                });
            }
            rows.push(cells);
        }
    }
    Ok(rows)
}
