//! Which schema a snapshot's rows are read with, and the scan tasks that
//! read them so.
//!
//! Iceberg's scan reads a snapshot with the schema it was committed under.
//! A current read must show the table's columns as they are now: a column
//! added since is NULL in older files, a renamed one keeps its values under
//! its new name, a widened one reads at its new type, a dropped one is gone,
//! and a column added by another engine without a new snapshot is there at
//! once. Time travel reads a snapshot with its own schema. Files are matched
//! to columns by field id, which no change of schema reuses.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use futures::TryStreamExt;
use iceberg::expr::{BinaryExpression, Predicate, Reference, SetExpression, UnaryExpression};
use iceberg::scan::FileScanTask;
use iceberg::spec::{Schema, SchemaRef, Type};
use iceberg::table::Table;
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

use crate::error::{Error, Result};

/// A snapshot and the schema its rows are read with.
#[derive(Debug, Clone)]
pub struct ReadAt {
    pub snapshot_id: i64,
    pub schema: SchemaRef,
}

impl ReadAt {
    /// The current snapshot with the current schema; None for a table with
    /// no snapshot yet.
    pub fn current(table: &Table) -> Option<Self> {
        let metadata = table.metadata();
        Some(ReadAt {
            snapshot_id: metadata.current_snapshot_id()?,
            schema: metadata.current_schema().clone(),
        })
    }

    /// The snapshot `snapshot_id` with the schema it was committed under.
    pub fn snapshot(name: &str, table: &Table, snapshot_id: i64) -> Result<Self> {
        let metadata = table.metadata();
        let snapshot =
            metadata
                .snapshot_by_id(snapshot_id)
                .ok_or_else(|| Error::SnapshotNotFound {
                    table: name.to_string(),
                    snapshot_id,
                })?;
        let schema = snapshot.schema(metadata).map_err(Error::iceberg(format!(
            "cannot read the schema of {name} at snapshot {snapshot_id}"
        )))?;
        Ok(ReadAt {
            snapshot_id,
            schema,
        })
    }
}

/// The scan tasks of the files of `at`'s snapshot that `filter` (over `at`'s
/// schema) does not rule out, each reading `columns` (all of `at`'s schema
/// when None) by field id, with no row predicate.
pub async fn plan_tasks(
    name: &str,
    table: &Table,
    at: &ReadAt,
    columns: Option<&[String]>,
    filter: Option<Predicate>,
) -> Result<Vec<FileScanTask>> {
    let context = || format!("cannot plan the scan of {name}");
    let metadata = table.metadata();
    let committed = ReadAt::snapshot(name, table, at.snapshot_id)?.schema;
    let field_ids: Vec<i32> = match columns {
        Some(columns) => columns
            .iter()
            .map(|c| {
                at.schema
                    .field_id_by_name(c)
                    .ok_or_else(|| Error::Internal(format!("{name} has no column {c} to read")))
            })
            .collect::<Result<_>>()?,
        None => at
            .schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| f.id)
            .collect(),
    };
    // Planning binds the filter to the schema the snapshot was committed
    // under (Iceberg's file statistics are read with it).
    let stable = stable_fields(metadata.schemas_iter().map(|s| s.as_ref()));
    let filter = filter.and_then(|f| translate(&f, &at.schema, &committed, &stable, false));
    let scan = table.scan().snapshot_id(at.snapshot_id).select_empty();
    let scan = match filter {
        Some(filter) => scan.with_filter(filter),
        None => scan,
    };
    let scan = scan.build().map_err(Error::iceberg(context()))?;
    let mut tasks: Vec<FileScanTask> = scan
        .plan_files()
        .await
        .map_err(Error::iceberg(context()))?
        .try_collect()
        .await
        .map_err(Error::iceberg(context()))?;
    let late = late_nested(table, &at.schema);
    let late_read = field_ids.iter().any(|id| late.contains(id));
    for task in &mut tasks {
        task.schema = at.schema.clone();
        task.project_field_ids = field_ids.clone();
        task.predicate = None;
        if late_read {
            // Iceberg reads a missing column as NULLs only if it is of a
            // primitive type: the reader leaves such a nested one out and
            // [`fill`] adds it.
            let own = file_schema(name, table, task).await?;
            task.project_field_ids
                .retain(|id| !late.contains(id) || own.field_by_id(*id).is_some());
        }
    }
    Ok(tasks)
}

/// The ids of the ARRAY, STRUCT and MAP columns of `schema` that an earlier
/// schema of the table lacks: older files may not have them.
fn late_nested(table: &Table, schema: &Schema) -> std::collections::HashSet<i32> {
    let schemas: Vec<_> = table.metadata().schemas_iter().collect();
    schema
        .as_struct()
        .fields()
        .iter()
        .filter(|f| !f.field_type.is_primitive())
        .filter(|f| schemas.iter().any(|s| s.field_by_id(f.id).is_none()))
        .map(|f| f.id)
        .collect()
}

/// The Arrow schema a read of `columns` (all when None) of `at` gives.
pub fn read_schema(name: &str, at: &ReadAt, columns: Option<&[String]>) -> Result<ArrowSchemaRef> {
    let all = iceberg::arrow::schema_to_arrow_schema(&at.schema)
        .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?;
    let Some(columns) = columns else {
        return Ok(std::sync::Arc::new(all));
    };
    let indices = columns
        .iter()
        .map(|c| {
            all.index_of(c)
                .map_err(|_| Error::Internal(format!("{name} has no column {c} to read")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(std::sync::Arc::new(all.project(&indices).map_err(
        Error::arrow(format!("the columns read of {name}")),
    )?))
}

/// A batch a task of [`plan_tasks`] read, with the nested columns its file
/// lacked added as NULLs (as `schema`, the read's).
pub fn fill(batch: RecordBatch, schema: &ArrowSchemaRef) -> Result<RecordBatch> {
    if batch.num_columns() == schema.fields().len() {
        return Ok(batch);
    }
    with_schema_of(&batch, schema)
}

/// The schema a data file was written with, from its Parquet footer: its
/// columns with their field ids and types, whatever the table's schemas say
/// now (a rewrite of the file keeps them).
pub async fn file_schema(name: &str, table: &Table, task: &FileScanTask) -> Result<SchemaRef> {
    let path = &task.data_file_path;
    let context = || format!("cannot read the columns of {path}, a data file of {name}");
    let footer = super::snapshots::parquet_footer(table, path, task.file_size_in_bytes)
        .await
        .map_err(|e| Error::Internal(format!("{}: {e}", context())))?;
    let metadata = footer.file_metadata();
    let arrow = parquet::arrow::parquet_to_arrow_schema(
        metadata.schema_descr(),
        metadata.key_value_metadata(),
    )
    .map_err(|e| Error::Internal(format!("{}: {e}", context())))?;
    let schema =
        iceberg::arrow::arrow_schema_to_schema(&arrow).map_err(Error::iceberg(format!(
            "{} (does every column have an Iceberg field id?)",
            context()
        )))?;
    Ok(std::sync::Arc::new(schema))
}

/// `predicate` (over `schema`) for a Parquet reader of `at`'s files: only
/// the conjuncts whose columns kept their type in every schema of the table
/// (a file written before a widening holds the narrower type, which a wider
/// literal does not compare with). None when nothing is left.
pub(super) fn for_reader(
    table: &Table,
    schema: &Schema,
    predicate: &Predicate,
) -> Option<Predicate> {
    let stable = stable_fields(table.metadata().schemas_iter().map(|s| s.as_ref()));
    translate(predicate, schema, schema, &stable, false)
}

/// Field ids whose type is the same in every schema that has them.
fn stable_fields<'a>(schemas: impl Iterator<Item = &'a Schema>) -> HashMap<i32, bool> {
    let mut types: HashMap<i32, (Type, bool)> = HashMap::new();
    for schema in schemas {
        for field in schema.as_struct().fields() {
            let ty = field.field_type.as_ref().clone();
            types
                .entry(field.id)
                .and_modify(|(seen, same)| *same &= *seen == ty)
                .or_insert((ty, true));
        }
    }
    types
        .into_iter()
        .map(|(id, (_, same))| (id, same))
        .collect()
}

/// `predicate`, whose columns are named as in `from`, with its columns
/// named as in `to` (matched by field id). A conjunct on a column `to` lacks
/// or whose type ever changed is dropped (the predicate only widens); under
/// OR or NOT (`strict`) nothing may be dropped, or the whole is None.
fn translate(
    predicate: &Predicate,
    from: &Schema,
    to: &Schema,
    stable: &HashMap<i32, bool>,
    strict: bool,
) -> Option<Predicate> {
    let rename = |reference: &Reference| -> Option<Reference> {
        let id = from.field_id_by_name(reference.name())?;
        if !stable.get(&id).copied().unwrap_or(false) {
            return None;
        }
        to.name_by_field_id(id).map(Reference::new)
    };
    match predicate {
        Predicate::AlwaysTrue | Predicate::AlwaysFalse => Some(predicate.clone()),
        Predicate::And(and) => {
            let [left, right] = and.inputs();
            let left = translate(left, from, to, stable, strict);
            let right = translate(right, from, to, stable, strict);
            match (left, right) {
                (Some(l), Some(r)) => Some(l.and(r)),
                (one, None) | (None, one) if !strict => one,
                _ => None,
            }
        }
        Predicate::Or(or) => {
            let [left, right] = or.inputs();
            Some(
                translate(left, from, to, stable, true)?
                    .or(translate(right, from, to, stable, true)?),
            )
        }
        Predicate::Not(not) => {
            let [inner] = not.inputs();
            Some(!translate(inner, from, to, stable, true)?)
        }
        Predicate::Unary(e) => Some(Predicate::Unary(UnaryExpression::new(
            e.op(),
            rename(e.term())?,
        ))),
        Predicate::Binary(e) => Some(Predicate::Binary(BinaryExpression::new(
            e.op(),
            rename(e.term())?,
            e.literal().clone(),
        ))),
        Predicate::Set(e) => Some(Predicate::Set(SetExpression::new(
            e.op(),
            rename(e.term())?,
            e.literals().clone(),
        ))),
    }
}

/// The Iceberg field id an Arrow field carries in its metadata, if any.
pub(super) fn field_id(field: &arrow::datatypes::Field) -> Option<i32> {
    field
        .metadata()
        .get(PARQUET_FIELD_ID_META_KEY)
        .and_then(|id| id.parse::<i32>().ok())
}

/// `batch`, rows written under an older schema of a table, as `schema` (an
/// Arrow schema of the table with Iceberg field ids): columns matched by
/// field id, a column added since all NULL, a dropped one left out, a
/// widened one cast. A batch already of `schema`'s columns comes back as is.
pub fn with_schema_of(batch: &RecordBatch, schema: &ArrowSchemaRef) -> Result<RecordBatch> {
    let given = batch.schema();
    // Names alone are not enough: a column dropped and added again under
    // its name is another column.
    let same = given.fields().len() == schema.fields().len()
        && given.fields().iter().zip(schema.fields()).all(|(g, s)| {
            g.name() == s.name() && g.data_type() == s.data_type() && field_id(g) == field_id(s)
        });
    if same {
        return RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(Error::arrow("rows of an older schema"));
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let found = field_id(field).and_then(|want| {
                given
                    .fields()
                    .iter()
                    .position(|g| field_id(g) == Some(want))
            });
            match found {
                Some(at) => arrow::compute::cast(batch.column(at), field.data_type()).map_err(
                    Error::arrow(format!("rows of an older schema: column {}", field.name())),
                ),
                None => Ok(arrow::array::new_null_array(
                    field.data_type(),
                    batch.num_rows(),
                )),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(Error::arrow("rows of an older schema"))
}

/// `schema` as pitlake declares its tables to DataFusion: the fields inside
/// nested types (a list's element, a struct's fields) without the Iceberg
/// field ids their metadata carries. DataFusion rebuilds such values without
/// it (a CROSS JOIN repeats each left value through a `ScalarValue`) and
/// then checks types exactly, so a declared type with them failed.
pub fn without_nested_ids(schema: &arrow::datatypes::Schema) -> arrow::datatypes::Schema {
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(plain(f.data_type())))
        .collect();
    arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// `ty` with no metadata on the fields nested in it.
fn plain(ty: &arrow::datatypes::DataType) -> arrow::datatypes::DataType {
    use arrow::datatypes::{DataType as D, Field};
    let field = |f: &Field| Arc::new(Field::new(f.name(), plain(f.data_type()), f.is_nullable()));
    match ty {
        D::List(f) => D::List(field(f)),
        D::LargeList(f) => D::LargeList(field(f)),
        D::FixedSizeList(f, n) => D::FixedSizeList(field(f), *n),
        D::Map(f, sorted) => D::Map(field(f), *sorted),
        D::Struct(fields) => D::Struct(fields.iter().map(|f| field(f)).collect()),
        other => other.clone(),
    }
}

/// `batch` as `schema` declares it: a column whose type differs only in the
/// names or metadata of nested fields is typed as declared (no copy).
pub fn as_declared(batch: RecordBatch, schema: &ArrowSchemaRef) -> Result<RecordBatch> {
    if batch
        .columns()
        .iter()
        .zip(schema.fields())
        .all(|(c, f)| c.data_type() == f.data_type())
    {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                return Ok(column.clone());
            }
            retyped(column.to_data(), field.data_type())
                .map(arrow::array::make_array)
                .map_err(Error::arrow(format!("column {}", field.name())))
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(Error::arrow("rows as declared"))
}

/// `data` typed as `to`, a type equal to its own but for the names and
/// metadata of nested fields, children included.
fn retyped(
    data: arrow::array::ArrayData,
    to: &arrow::datatypes::DataType,
) -> std::result::Result<arrow::array::ArrayData, arrow::error::ArrowError> {
    use arrow::datatypes::DataType as D;
    let children: Vec<&arrow::datatypes::DataType> = match to {
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) | D::Map(f, _) => {
            vec![f.data_type()]
        }
        D::Struct(fields) => fields.iter().map(|f| f.data_type()).collect(),
        _ => Vec::new(),
    };
    let child_data = data
        .child_data()
        .iter()
        .zip(&children)
        .map(|(child, ty)| retyped(child.clone(), ty))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let builder = data.into_builder().data_type(to.clone());
    let builder = if children.is_empty() {
        builder
    } else {
        builder.child_data(child_data)
    };
    builder.build()
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{Datum, NestedField, PrimitiveType};

    use super::*;

    fn schema(id: i32, fields: &[(i32, &str, PrimitiveType)]) -> Schema {
        Schema::builder()
            .with_schema_id(id)
            .with_fields(fields.iter().map(|(id, name, ty)| {
                NestedField::optional(*id, *name, Type::Primitive(ty.clone())).into()
            }))
            .build()
            .expect("a valid schema")
    }

    #[test]
    fn conjuncts_follow_renames_and_drop_what_the_older_schema_lacks() {
        let old = schema(
            0,
            &[(1, "k", PrimitiveType::Long), (2, "a", PrimitiveType::Int)],
        );
        let new = schema(
            1,
            &[
                (1, "k", PrimitiveType::Long),
                (2, "b", PrimitiveType::Int),
                (3, "c", PrimitiveType::Int),
            ],
        );
        let stable = stable_fields([&old, &new].into_iter());
        let p = Reference::new("b")
            .greater_than(Datum::int(1))
            .and(Reference::new("c").equal_to(Datum::int(2)));
        let t = translate(&p, &new, &old, &stable, false).expect("a conjunct is left");
        assert_eq!(t.to_string(), "a > 1");
        // Under OR a dropped side would narrow the predicate: nothing is left.
        let p = Reference::new("b")
            .greater_than(Datum::int(1))
            .or(Reference::new("c").equal_to(Datum::int(2)));
        assert!(translate(&p, &new, &old, &stable, false).is_none());
        let p = !(Reference::new("b")
            .greater_than(Datum::int(1))
            .and(Reference::new("c").equal_to(Datum::int(2))));
        assert!(translate(&p, &new, &old, &stable, false).is_none());
    }

    #[test]
    fn a_widened_column_is_never_compared() {
        let old = schema(
            0,
            &[(1, "k", PrimitiveType::Long), (2, "a", PrimitiveType::Int)],
        );
        let new = schema(
            1,
            &[(1, "k", PrimitiveType::Long), (2, "a", PrimitiveType::Long)],
        );
        let stable = stable_fields([&old, &new].into_iter());
        let p = Reference::new("a")
            .less_than(Datum::long(3_000_000_000_i64))
            .and(Reference::new("k").equal_to(Datum::long(7)));
        let t = translate(&p, &new, &new, &stable, false).expect("a conjunct is left");
        assert_eq!(t.to_string(), "k = 7");
    }
}
