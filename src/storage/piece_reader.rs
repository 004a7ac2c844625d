//! Reading one piece of a scan with a row test of the caller's (a join's
//! hashed key list): the Parquet reader decodes the test's columns first and
//! the others only for the rows that pass, and skips row groups the piece's
//! predicate rules out by their statistics.
//!
//! Iceberg's reader takes no such test: its row filter is built from its own
//! predicate, whose `IN` compares every row with every listed value. So a
//! handful of labels against a long history decoded every column of every
//! row in their keys' range, then dropped nearly all of them.
//!
//! Only plain pieces are read here: top-level columns of primitive types,
//! each with its field id in the file, and no delete files; a column the file
//! lacks is NULL. Anything else (nested columns, files written without field
//! ids, INT96 timestamps, deletes, columns read from the partition or filled
//! with an initial default) goes to Iceberg's reader, which knows those rules.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowFileReader;
use iceberg::expr::{BoundPredicate, PredicateOperator};
use iceberg::io::FileMetadata;
use iceberg::scan::FileScanTask;
use iceberg::spec::{PrimitiveLiteral, PrimitiveType, Transform};
use iceberg::table::Table;
use parquet::arrow::arrow_reader::{ArrowPredicate, ArrowPredicateFn, RowFilter};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::{LogicalType, TimeUnit, Type as PhysicalType};
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;
use parquet::schema::types::SchemaDescriptor;

use super::read_at::{field_id, with_schema_of};
use super::snapshots::failed_read;
use crate::error::Result;

/// Which rows of a piece to keep: `test` is given batches of `columns` (by
/// name, typed as the scan reads them) and answers per row; false and NULL
/// drop the row.
#[derive(Clone)]
pub struct RowTest {
    pub columns: Vec<String>,
    #[allow(clippy::type_complexity)]
    pub test:
        Arc<dyn Fn(&RecordBatch) -> std::result::Result<BooleanArray, ArrowError> + Send + Sync>,
}

impl std::fmt::Debug for RowTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowTest({:?})", self.columns)
    }
}

/// The rows of `task`'s piece (those that pass `test`, if any), as `schema`
/// (the scan's read schema, with field ids), in batches of `batch_size`;
/// None when the piece is not a plain one (see the module's doc). Errors
/// name `name`, the table, and say so when the file was deleted meanwhile.
pub(super) async fn read_tested(
    name: &str,
    table: &Table,
    task: &FileScanTask,
    schema: &SchemaRef,
    test: Option<&RowTest>,
    batch_size: usize,
) -> std::result::Result<Option<BoxStream<'static, Result<RecordBatch>>>, String> {
    if !task.deletes.is_empty() {
        return Ok(None);
    }
    let path = &task.data_file_path;
    let input = table.file_io().new_input(path).map_err(|e| e.to_string())?;
    let reader = input.reader().await.map_err(|e| e.to_string())?;
    let file = ArrowFileReader::new(
        FileMetadata {
            size: task.file_size_in_bytes,
        },
        Box::new(reader),
    );
    let builder = ParquetRecordBatchStreamBuilder::new(file)
        .await
        .map_err(|e| e.to_string())?;
    let descr = builder.parquet_schema().clone();
    let Some(leaves) = plain_leaves(&descr) else {
        return Ok(None);
    };
    // The columns read: those of `schema` the file has (one it lacks is
    // filled with NULLs afterwards, as Iceberg does).
    let mut read = Vec::new();
    for field in schema.fields() {
        if field.data_type().is_nested() {
            return Ok(None);
        }
        let Some(id) = field_id(field) else {
            return Ok(None);
        };
        match leaves.get(&id) {
            _ if partition_constant(task, id) => return Ok(None),
            Some(&leaf) => read.push(leaf),
            None if has_initial_default(task, id) => return Ok(None),
            None => {}
        }
    }
    let groups = row_groups(builder.metadata().row_groups(), task, &leaves);
    let builder = builder
        .with_projection(ProjectionMask::leaves(&descr, read))
        .with_row_groups(groups)
        .with_batch_size(batch_size);
    let builder = match test {
        None => builder,
        Some(test) => {
            let Some(predicate) = row_filter(test, schema, &descr, &leaves) else {
                return Ok(None);
            };
            builder.with_row_filter(RowFilter::new(vec![predicate]))
        }
    };
    let stream = builder.build().map_err(|e| e.to_string())?;
    let schema = schema.clone();
    let (name, path) = (name.to_string(), path.clone());
    Ok(Some(
        stream
            .map_err(move |e| failed_read(&name, &path, e))
            .and_then(move |batch| futures::future::ready(with_schema_of(&batch, &schema)))
            .boxed(),
    ))
}

/// Whether Iceberg reads field `id` of `task`'s piece from its partition
/// value (an identity transform of it), which the spec makes authoritative
/// over the file's column.
fn partition_constant(task: &FileScanTask, id: i32) -> bool {
    task.partition.is_some()
        && task.partition_spec.as_ref().is_some_and(|spec| {
            spec.fields()
                .iter()
                .any(|f| f.source_id == id && f.transform == Transform::Identity)
        })
}

/// Whether field `id` has a value for files written before it was added
/// (its `initial-default`), which Iceberg fills where we would fill NULL.
fn has_initial_default(task: &FileScanTask, id: i32) -> bool {
    task.schema
        .field_by_id(id)
        .is_none_or(|f| f.initial_default.is_some())
}

/// `test` as the Parquet reader's row filter over the file's leaves; None
/// when the file lacks one of its columns.
fn row_filter(
    test: &RowTest,
    schema: &SchemaRef,
    descr: &SchemaDescriptor,
    leaves: &HashMap<i32, usize>,
) -> Option<Box<dyn ArrowPredicate>> {
    let mut tested = Vec::new();
    let mut fields = Vec::new();
    for name in &test.columns {
        let field = schema.field_with_name(name).ok()?;
        let id = field_id(field)?;
        tested.push(*leaves.get(&id)?);
        fields.push(field.clone());
    }
    let tested_schema = Arc::new(Schema::new(fields));
    let test = test.clone();
    // The Parquet reader hands the test's columns in file order; the test
    // takes them in its own order, typed as the scan reads them.
    let mut order: Vec<usize> = (0..tested.len()).collect();
    order.sort_by_key(|&i| tested[i]);
    let positions: Vec<usize> = (0..order.len())
        .map(|i| order.iter().position(|&o| o == i).unwrap_or(i))
        .collect();
    let predicate = ArrowPredicateFn::new(
        ProjectionMask::leaves(descr, tested.iter().copied()),
        move |batch: RecordBatch| {
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(positions.len());
            for (field, &position) in tested_schema.fields().iter().zip(&positions) {
                columns.push(arrow::compute::cast(
                    batch.column(position),
                    field.data_type(),
                )?);
            }
            let batch = RecordBatch::try_new(tested_schema.clone(), columns)?;
            (test.test)(&batch)
        },
    );
    Some(Box::new(predicate))
}

/// Field id → leaf index of the file's top-level primitive columns; None
/// when a column lacks a field id or is an INT96 timestamp (Iceberg's
/// reader assigns ids and converts those).
fn plain_leaves(descr: &SchemaDescriptor) -> Option<HashMap<i32, usize>> {
    let mut leaves = HashMap::new();
    for (i, column) in descr.columns().iter().enumerate() {
        if column.physical_type() == PhysicalType::INT96 {
            return None;
        }
        let root = descr.get_column_root(i);
        let info = root.get_basic_info();
        if !info.has_id() {
            return None;
        }
        if column.path().parts().len() == 1 {
            leaves.insert(info.id(), i);
        }
    }
    Some(leaves)
}

/// The row groups of `task`'s piece (those whose middle lies in its byte
/// range, reckoned as Iceberg's reader does), less those its predicate rules
/// out by their statistics.
fn row_groups(
    groups: &[RowGroupMetaData],
    task: &FileScanTask,
    leaves: &HashMap<i32, usize>,
) -> Vec<usize> {
    let whole = task.start == 0 && task.length == 0;
    let (start, end) = (task.start, task.start + task.length);
    let mut offset = 4u64;
    let mut selected = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let size = u64::try_from(group.compressed_size()).unwrap_or(0);
        let middle = offset + size / 2;
        offset += size;
        let in_piece = whole || (start <= middle && middle < end);
        if !in_piece {
            continue;
        }
        if let Some(predicate) = &task.predicate
            && rules_out(predicate, group, leaves)
        {
            continue;
        }
        selected.push(i);
    }
    selected
}

/// Whether no row of `group` can satisfy `predicate`, by the least and
/// greatest values its statistics give for whole-number and time columns
/// (other conjuncts, and columns without statistics, rule nothing out).
fn rules_out(
    predicate: &BoundPredicate,
    group: &RowGroupMetaData,
    leaves: &HashMap<i32, usize>,
) -> bool {
    match predicate {
        BoundPredicate::AlwaysFalse => true,
        BoundPredicate::And(and) => {
            let [left, right] = and.inputs();
            rules_out(left, group, leaves) || rules_out(right, group, leaves)
        }
        BoundPredicate::Binary(e) => {
            let field = e.term().field();
            let Some((least, greatest)) = range(group, leaves, field.id, &field.field_type) else {
                return false;
            };
            let Some(value) = whole_number(e.literal().literal()) else {
                return false;
            };
            match e.op() {
                PredicateOperator::LessThan => least >= value,
                PredicateOperator::LessThanOrEq => least > value,
                PredicateOperator::GreaterThan => greatest <= value,
                PredicateOperator::GreaterThanOrEq => greatest < value,
                PredicateOperator::Eq => value < least || value > greatest,
                _ => false,
            }
        }
        BoundPredicate::Set(e) if e.op() == PredicateOperator::In => {
            let field = e.term().field();
            let Some((least, greatest)) = range(group, leaves, field.id, &field.field_type) else {
                return false;
            };
            e.literals()
                .iter()
                .map(|d| whole_number(d.literal()))
                .all(|v| v.is_some_and(|v| v < least || v > greatest))
        }
        _ => false,
    }
}

fn whole_number(literal: &PrimitiveLiteral) -> Option<i64> {
    match literal {
        PrimitiveLiteral::Int(v) => Some(i64::from(*v)),
        PrimitiveLiteral::Long(v) => Some(*v),
        _ => None,
    }
}

/// The least and greatest value of field `id` in `group`, when its column
/// holds whole numbers in the unit the table's type reads them in.
fn range(
    group: &RowGroupMetaData,
    leaves: &HashMap<i32, usize>,
    id: i32,
    field_type: &iceberg::spec::Type,
) -> Option<(i64, i64)> {
    let column = group.column(*leaves.get(&id)?);
    let iceberg::spec::Type::Primitive(primitive) = field_type else {
        return None;
    };
    let logical = column.column_descr().logical_type_ref();
    let unit_matches = match primitive {
        PrimitiveType::Int | PrimitiveType::Long => {
            matches!(
                logical,
                None | Some(LogicalType::Integer {
                    is_signed: true,
                    ..
                })
            )
        }
        PrimitiveType::Date => matches!(logical, Some(LogicalType::Date)),
        PrimitiveType::Timestamp | PrimitiveType::Timestamptz => matches!(
            logical,
            Some(LogicalType::Timestamp {
                unit: TimeUnit::MICROS,
                ..
            })
        ),
        PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs => matches!(
            logical,
            Some(LogicalType::Timestamp {
                unit: TimeUnit::NANOS,
                ..
            })
        ),
        _ => false,
    };
    if !unit_matches {
        return None;
    }
    match column.statistics()? {
        Statistics::Int32(s) => Some((i64::from(*s.min_opt()?), i64::from(*s.max_opt()?))),
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}
