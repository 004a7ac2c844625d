//! Printing results: aligned tables for people, CSV and JSON for programs,
//! Arrow IPC streams for programs that read Arrow, and the plain cell text the
//! SQL examples pin.

use std::io::Write;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::ipc::writer::StreamWriter;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SendableRecordBatchStream;
use futures::TryStreamExt;

use crate::error::{Error, Result};
use crate::session::{StatementResult, outbound_pieces};

/// How `pitlake sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
    /// One Arrow IPC stream per statement that returns columns; statements
    /// without columns write nothing, so that a script's output stays a
    /// sequence of readable streams.
    Arrow,
}

impl Format {
    /// Whether the output is binary (not for a terminal).
    pub fn is_binary(self) -> bool {
        self == Format::Arrow
    }
}

/// Renders a statement result; statements without columns print `OK` in the
/// text formats and nothing in Arrow's.
pub fn render(result: &StatementResult, format: Format) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write(result, format, &mut out)?;
    Ok(out)
}

/// Writes a statement result to `out` as [`render`] would return it, Arrow's
/// batches one by one rather than copied whole first.
pub fn write(result: &StatementResult, format: Format, out: &mut dyn Write) -> Result<()> {
    let io = |source| Error::Io {
        path: "the output".into(),
        source,
    };
    if result.schema.fields().is_empty() {
        return if format.is_binary() {
            Ok(())
        } else {
            out.write_all(b"OK\n").map_err(io)
        };
    }
    let text = match format {
        Format::Arrow => return arrow_stream(result, out),
        Format::Table => table_text(result)?,
        Format::Csv => csv_text(result)?,
        Format::Json => json_text(result)?,
    };
    out.write_all(text.as_bytes()).map_err(io)
}

/// Writes a statement's batches as they come, as one Arrow IPC stream (none
/// for a statement without columns, which is run to its end all the same):
/// memory holds a batch at a time, not the result.
///
/// The schema is written with the first batch, so a query failing before it
/// writes nothing; one failing later ends its stream with an unfinished
/// message, so that a reader fails too instead of taking the rows before the
/// failure for the whole result.
pub async fn write_arrow_stream(
    mut batches: SendableRecordBatchStream,
    out: &mut dyn Write,
) -> Result<()> {
    let schema = batches.schema();
    if schema.fields().is_empty() {
        while batches.try_next().await?.is_some() {}
        return Ok(());
    }
    let mut next = batches.try_next().await?;
    let mut writer = StreamWriter::try_new(out, &schema).map_err(arrow_err)?;
    while let Some(batch) = next {
        write_batch(&mut writer, batch)?;
        next = match batches.try_next().await {
            Ok(batch) => batch,
            Err(e) => {
                // A message header promising bytes that never come.
                let _ = writer.get_mut().write_all(&UNFINISHED);
                return Err(e.into());
            }
        };
    }
    writer.finish().map_err(arrow_err)
}

/// An IPC continuation marker and a metadata length of 8, with no metadata.
const UNFINISHED: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 8, 0, 0, 0];

fn arrow_err(e: arrow::error::ArrowError) -> Error {
    Error::arrow("cannot write the result as Arrow")(e)
}

/// Writes one batch, its views compacted (see [`outbound_pieces`]).
fn write_batch(writer: &mut StreamWriter<&mut dyn Write>, batch: RecordBatch) -> Result<()> {
    for piece in outbound_pieces(batch, usize::MAX).map_err(arrow_err)? {
        writer.write(&piece).map_err(arrow_err)?;
    }
    Ok(())
}

/// The result as an Arrow IPC stream: its schema, its batches, the end mark.
fn arrow_stream(result: &StatementResult, out: &mut dyn Write) -> Result<()> {
    let mut writer = StreamWriter::try_new(out, &result.schema).map_err(arrow_err)?;
    for batch in &result.batches {
        write_batch(&mut writer, batch.clone())?;
    }
    writer.finish().map_err(arrow_err)
}

fn to_err(e: arrow::error::ArrowError) -> Error {
    Error::arrow("cannot print the result")(e)
}

fn table_text(result: &StatementResult) -> Result<String> {
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

fn csv_text(result: &StatementResult) -> Result<String> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if result.batches.is_empty() {
            let empty = RecordBatch::new_empty(result.schema.clone());
            writer.write(&nested_as_json(&empty)?).map_err(to_err)?;
        }
        for batch in &result.batches {
            writer.write(&nested_as_json(batch)?).map_err(to_err)?;
        }
    }
    String::from_utf8(out).map_err(|e| Error::Internal(format!("printed result: {e}")))
}

fn json_text(result: &StatementResult) -> Result<String> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::ArrayWriter::new(&mut out);
        let batches: Vec<&RecordBatch> = result.batches.iter().collect();
        writer.write_batches(&batches).map_err(to_err)?;
        writer.finish().map_err(to_err)?;
    }
    let mut text =
        String::from_utf8(out).map_err(|e| Error::Internal(format!("printed result: {e}")))?;
    if text.is_empty() {
        text.push_str("[]");
    }
    text.push('\n');
    Ok(text)
}

/// `batch` with its nested columns (lists, structs, maps), which CSV has no
/// form for, as text holding each value in JSON.
fn nested_as_json(batch: &RecordBatch) -> Result<RecordBatch> {
    let nested: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| batch.column(i).data_type().is_nested())
        .collect();
    if nested.is_empty() {
        return Ok(batch.clone());
    }
    let to_err = |e: arrow::error::ArrowError| Error::arrow("cannot print the result as CSV")(e);
    let text_err = |e: String| Error::Internal(format!("cannot print the result as CSV: {e}"));
    let only_nested = batch.project(&nested).map_err(to_err)?;
    let mut lines = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut lines);
        writer.write(&only_nested).map_err(to_err)?;
        writer.finish().map_err(to_err)?;
    }
    let text = String::from_utf8(lines).map_err(|e| text_err(e.to_string()))?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = text
        .lines()
        .map(|line| serde_json::from_str(line).map_err(|e| text_err(e.to_string())))
        .collect::<Result<_>>()?;
    let mut fields: Vec<arrow::datatypes::FieldRef> = batch.schema().fields().to_vec();
    let mut columns = batch.columns().to_vec();
    for &i in &nested {
        let name = batch.schema().field(i).name().clone();
        // The JSON writer leaves out keys whose value is null.
        let values: arrow::array::StringArray = rows
            .iter()
            .map(|row| row.get(&name).map(|v| v.to_string()))
            .collect();
        fields[i] = std::sync::Arc::new(arrow::datatypes::Field::new(name, DataType::Utf8, true));
        columns[i] = std::sync::Arc::new(values);
    }
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    RecordBatch::try_new(schema, columns).map_err(to_err)
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
            .map_err(Error::arrow("cannot print the result"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Session;

    #[tokio::test]
    async fn every_format_prints_nested_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = Session::open(dir.path()).await.expect("open");
        session
            .sql("CREATE TABLE fg (a INT); INSERT INTO fg VALUES (1)")
            .await
            .expect("setup");
        let sql = r#"SELECT snapshot_id, operation, summary, [1, 2] AS list, NULL::INT[] AS none
                     FROM "fg$snapshots""#;
        let result = session.sql(sql).await.expect("query").remove(0);
        let csv = String::from_utf8(render(&result, Format::Csv).expect("csv")).expect("utf-8");
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("snapshot_id,operation,summary,list,none")
        );
        let row = lines.next().expect("a row");
        assert!(row.contains(r#""{""added-data-files"":""1"""#), "{row}");
        assert!(row.ends_with(r#","[1,2]","#), "{row}");
        for format in [Format::Table, Format::Json] {
            let text = String::from_utf8(render(&result, format).expect("renders")).expect("utf-8");
            assert!(text.contains("added-records"), "{text}");
        }
    }
}
