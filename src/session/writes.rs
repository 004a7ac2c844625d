//! Write statements, turned into streams of batches for the write path
//! ([`crate::ingest::WritePath`], which commits and tells the online store):
//! INSERT, COPY FROM and COPY TO, CREATE TABLE [AS SELECT], Flight bulk
//! ingest, VACUUM.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions};
use datafusion::sql::parser::{CopyToSource, CopyToStatement, Statement as DFStatement};
use futures::{StreamExt, TryStreamExt};
use sqlparser::ast::{self, CopySource, CreateTable, Insert, ObjectName, TableObject};

use datafusion::datasource::TableProvider;

use super::Session;
use super::results::{count, done, one_batch};
use crate::access::Securable;
use crate::catalog::{self, TableName};
use crate::error::{Error, Result};
use crate::file_access::Access;
use crate::ingest::{self, IngestMode, target_of};
use crate::shared::TEMP_SCHEMA;
use crate::sql::name_parts;
use crate::tables::{TempTable, TempTables};

impl Session {
    /// The table a statement writes to, as named, loaded, with what its rows
    /// must fit.
    async fn write_target(
        &self,
        table_name: &ObjectName,
    ) -> Result<(TableName, iceberg::table::Table, ingest::Target)> {
        let name = self.resolve_name(table_name)?;
        self.require_insert(&name).await?;
        if self.is_view(&name) {
            return Err(Error::Invalid(format!(
                "{name} is a view: write into the tables it reads"
            )));
        }
        let table = self
            .warehouse()
            .load_table(&name.schema, &name.table)
            .await?;
        let target = target_of(&name.to_string(), &table)?;
        Ok((name, table, target))
    }

    /// Writes a stream of batches into `schema.table` as one snapshot, columns
    /// matched by name (Flight SQL bulk ingest). A missing table is created
    /// from the first batch's columns when `create` is set; an existing one is
    /// appended to when `append` is set.
    pub async fn ingest(
        &self,
        schema: Option<&str>,
        table: &str,
        create: bool,
        append: bool,
        input: impl futures::Stream<Item = Result<RecordBatch>> + Send,
    ) -> Result<u64> {
        if schema == Some(TEMP_SCHEMA) {
            return self.ingest_temporary(table, create, append, input).await;
        }
        let name = TableName::new(
            schema
                .map(str::to_string)
                .unwrap_or_else(|| self.current_schema()),
            table,
        )?;
        let exists = self
            .warehouse()
            .try_load_table(&name.schema, &name.table)
            .await?
            .is_some();
        match exists {
            true => self.require_insert(&name).await?,
            false => self.require_create_in(&name).await?,
        }
        let mode = IngestMode { create, append };
        let rows = self.store.writes().ingest(&name, mode, input).await?;
        self.audit_write(&name, &format!("bulk ingest of {rows} rows"))
            .await;
        if !exists {
            self.record_owner(Securable::Table(name)).await?;
        }
        Ok(rows)
    }

    /// Flight SQL bulk ingest into a temporary table of this session
    /// (`adbc_ingest(..., temporary=True)`): columns matched by name.
    pub async fn ingest_temporary(
        &self,
        table: &str,
        create: bool,
        append: bool,
        input: impl futures::Stream<Item = Result<RecordBatch>> + Send,
    ) -> Result<u64> {
        let mut input = Box::pin(input.peekable());
        let existing = self.temp.get(table);
        let target = match existing {
            Some(target) if append => target,
            Some(_) => {
                return Err(Error::AlreadyExists {
                    kind: "temporary table",
                    name: table.to_string(),
                });
            }
            None if create => {
                let schema = match input.as_mut().peek().await {
                    Some(Ok(batch)) => batch.schema(),
                    Some(Err(_)) => {
                        return Err(input.next().await.and_then(Result::err).unwrap_or_else(
                            || Error::Internal("ingest stream changed under peek".into()),
                        ));
                    }
                    None => {
                        return Err(Error::BadInput {
                            table: table.to_string(),
                            reason: "no data to create the temporary table from".into(),
                        });
                    }
                };
                let made = self.temp.create(table, schema, false)?.ok_or_else(|| {
                    Error::AlreadyExists {
                        kind: "temporary table",
                        name: table.to_string(),
                    }
                })?;
                let made = MadeTemporary::new(&self.temp, table, made);
                let schema = made.table.schema();
                let what = format!("temporary table {table}");
                let conformed = input.map(move |batch| conform_by_name(&schema, &batch?, &what));
                let rows = made.table.append(conformed).await?;
                made.keep();
                return Ok(rows);
            }
            None => {
                return Err(Error::TableNotFound {
                    table: format!("{TEMP_SCHEMA}.{table}"),
                });
            }
        };
        let schema = target.schema();
        let what = format!("temporary table {table}");
        let conformed = input.map(move |batch| conform_by_name(&schema, &batch?, &what));
        target.append(conformed).await
    }

    /// `COPY <table | (query)> TO 'file'`, planned by DataFusion.
    pub(super) async fn copy_to(
        &self,
        source: CopySource,
        filename: String,
        format: Option<String>,
    ) -> Result<SendableRecordBatchStream> {
        let source = match source {
            CopySource::Query(query) => {
                let mut statement = ast::Statement::Query(query);
                self.prepare(&mut statement).await?;
                let ast::Statement::Query(query) = statement else {
                    return Err(Error::Internal("COPY TO lost its query".into()));
                };
                CopyToSource::Query(query)
            }
            CopySource::Table {
                table_name,
                columns,
            } if columns.is_empty() => match self.temporary_name(&table_name) {
                Some(temporary) => CopyToSource::Relation(ObjectName::from(vec![
                    ast::Ident::new(TEMP_SCHEMA),
                    ast::Ident::with_quote('"', temporary),
                ])),
                None => CopyToSource::Relation(table_name),
            },
            CopySource::Table { .. } => {
                return Err(Error::NotSupported(
                    "COPY t (columns) TO: use COPY (SELECT columns FROM t) TO".into(),
                ));
            }
        };
        let target = self
            .files
            .check(self.warehouse().root(), &filename, Access::Write)?;
        let target = target
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Invalid(format!("COPY TO: the path {filename} is not UTF-8")))?;
        self.run_planned(DFStatement::CopyTo(CopyToStatement {
            source,
            target,
            partitioned_by: vec![],
            stored_as: format,
            options: vec![],
        }))
        .await
    }

    /// `CREATE TABLE` (columns) or `CREATE TABLE AS SELECT`, as a plain Iceberg table.
    pub(super) async fn create_table(
        &self,
        create: CreateTable,
    ) -> Result<SendableRecordBatchStream> {
        if create.temporary {
            return self.create_temporary(create).await;
        }
        if create.external || create.or_replace || create.location.is_some() {
            return Err(Error::NotSupported(
                "CREATE EXTERNAL TABLE, OR REPLACE and LOCATION: pitlake tables live in the warehouse"
                    .into(),
            ));
        }
        let name = self.resolve_name(&create.name)?;
        self.require_create_in(&name).await?;
        let Some(query) = create.query else {
            if create.columns.is_empty() {
                return Err(Error::Invalid(format!("CREATE TABLE {name} needs columns")));
            }
            let schema =
                catalog::types::schema_from_columns(&name.to_string(), &create.columns, |_| false)?;
            let made = catalog::create_table(
                self.warehouse(),
                &name,
                schema,
                HashMap::new(),
                create.if_not_exists,
            )
            .await?;
            if made.is_some() {
                self.record_owner(Securable::Table(name)).await?;
            }
            return done();
        };
        if !create.columns.is_empty() {
            return Err(Error::NotSupported(
                "CREATE TABLE with both columns and AS SELECT".into(),
            ));
        }
        let stream = self.run_query(ast::Statement::Query(query)).await?;
        let schema = catalog::types::schema_from_arrow(&name.to_string(), &stream.schema())?;
        let input = stream.map(|b| b.map_err(Error::from));
        let written = self
            .store
            .writes()
            .create_as(&name, schema, create.if_not_exists, input)
            .await?;
        match written {
            Some(outcome) => {
                self.record_owner(Securable::Table(name)).await?;
                count(outcome.rows)
            }
            None => done(),
        }
    }

    /// `CREATE TEMPORARY TABLE t (columns) | AS SELECT ...`: a table of this
    /// session, in memory (see [`crate::tables::TempTables`]).
    async fn create_temporary(&self, create: CreateTable) -> Result<SendableRecordBatchStream> {
        if create.external || create.or_replace || create.location.is_some() {
            return Err(Error::NotSupported(
                "CREATE TEMPORARY TABLE with EXTERNAL, OR REPLACE or LOCATION".into(),
            ));
        }
        let name = match name_parts(&create.name).as_slice() {
            [_] => create
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(catalog::types::normalize)
                .unwrap_or_default(),
            [schema, _] if schema == TEMP_SCHEMA => {
                self.temporary_name(&create.name).unwrap_or_default()
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "temporary table {} can only live in schema {TEMP_SCHEMA}: leave the schema out",
                    create.name
                )));
            }
        };
        let Some(query) = create.query else {
            if create.columns.is_empty() {
                return Err(Error::Invalid(format!(
                    "CREATE TEMPORARY TABLE {name} needs columns"
                )));
            }
            // DataFusion plans the column list (without running anything) to
            // give its Arrow schema.
            let mut plain = create.clone();
            plain.temporary = false;
            let plan = self
                .ctx
                .state()
                .statement_to_plan(DFStatement::Statement(Box::new(
                    ast::Statement::CreateTable(plain),
                )))
                .await?;
            let schema = Arc::new(plan.schema().as_arrow().clone());
            let schema = match &plan {
                datafusion::logical_expr::LogicalPlan::Ddl(
                    datafusion::logical_expr::DdlStatement::CreateMemoryTable(c),
                ) => Arc::new(c.input.schema().as_arrow().clone()),
                _ => schema,
            };
            self.temp.create(&name, schema, create.if_not_exists)?;
            return done();
        };
        if !create.columns.is_empty() {
            return Err(Error::NotSupported(
                "CREATE TEMPORARY TABLE with both columns and AS SELECT".into(),
            ));
        }
        let stream = self.run_query(ast::Statement::Query(query)).await?;
        let Some(table) = self
            .temp
            .create(&name, stream.schema(), create.if_not_exists)?
        else {
            return done();
        };
        // Failed or cancelled (the statement dropped), it leaves no table.
        let made = MadeTemporary::new(&self.temp, &name, table);
        let rows = made
            .table
            .append(stream.map(|b| b.map_err(Error::from)))
            .await?;
        made.keep();
        count(rows)
    }

    /// `INSERT INTO t [(columns)] VALUES ... | SELECT ...`: one snapshot.
    pub(super) async fn insert(&self, insert: Insert) -> Result<SendableRecordBatchStream> {
        if let TableObject::TableName(table) = &insert.table
            && self.temporary_name(table).is_some()
        {
            // DataFusion plans it; the temporary table takes the rows.
            return self.run_query(ast::Statement::Insert(insert)).await;
        }
        if insert.overwrite
            || insert.on.is_some()
            || insert.returning.is_some()
            || !insert.assignments.is_empty()
            || insert.partitioned.is_some()
        {
            return Err(Error::NotSupported(
                "INSERT OVERWRITE, ON CONFLICT, RETURNING, SET and PARTITION".into(),
            ));
        }
        let TableObject::TableName(table_name) = &insert.table else {
            return Err(Error::NotSupported("INSERT INTO a table function".into()));
        };
        let (name, table, target) = self.write_target(table_name).await?;
        let source = insert
            .source
            .ok_or_else(|| Error::Invalid(format!("INSERT INTO {name} needs VALUES or SELECT")))?;

        // Where each table column comes from: a source column, or NULL.
        let table_columns: Vec<String> = target
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let positions: Vec<Option<usize>> = if insert.columns.is_empty() {
            (0..table_columns.len()).map(Some).collect()
        } else {
            let listed: Vec<String> = insert
                .columns
                .iter()
                .map(catalog::types::normalize)
                .collect();
            for (i, c) in listed.iter().enumerate() {
                if !table_columns.contains(c) {
                    return Err(Error::BadInput {
                        table: name.to_string(),
                        reason: format!("there is no column {c}"),
                    });
                }
                if listed[..i].contains(c) {
                    return Err(Error::BadInput {
                        table: name.to_string(),
                        reason: format!("column {c} is listed twice"),
                    });
                }
            }
            table_columns
                .iter()
                .map(|c| listed.iter().position(|l| l == c))
                .collect()
        };
        let expected = positions.iter().flatten().count();

        let mut source = source;
        let source_is_values = text_values(&mut source, &positions, &target.schema);
        let stream = if source_is_values {
            let mut statement = ast::Statement::Query(source);
            self.prepare(&mut statement).await?;
            let ordered = self.in_order();
            let plan = ordered
                .state()
                .statement_to_plan(DFStatement::Statement(Box::new(statement)))
                .await?;
            ordered
                .execute_logical_plan(plan)
                .await?
                .execute_stream()
                .await?
        } else {
            self.run_query(ast::Statement::Query(source)).await?
        };
        let given = stream.schema().fields().len();
        if given != expected {
            return Err(Error::BadInput {
                table: name.to_string(),
                reason: format!(
                    "{given} values per row given for {expected} columns ({})",
                    positions
                        .iter()
                        .zip(&table_columns)
                        .filter(|(p, _)| p.is_some())
                        .map(|(_, c)| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let input = stream.map(move |batch| {
            let batch = batch?;
            let columns = positions
                .iter()
                .map(|p| match p {
                    Some(i) => batch.column(*i).clone(),
                    None => new_null_array(&DataType::Null, batch.num_rows()),
                })
                .collect::<Vec<_>>();
            let fields: Vec<Field> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                .collect();
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                .map_err(Error::arrow("a row of values"))
        });
        let writes = self.store.writes();
        if streams_inserts(&table, &source_is_values) {
            let batches: Vec<RecordBatch> = Box::pin(input).try_collect().await?;
            let Some(first) = batches.first() else {
                return count(0);
            };
            let batch = arrow::compute::concat_batches(&first.schema(), &batches)
                .map_err(|e| Error::Internal(format!("INSERT INTO {name}: {e}")))?;
            return count(writes.append_streamed(&name, &table, batch).await?);
        }
        let outcome = writes
            .append(&name, &table, input, "insert", HashMap::new())
            .await?;
        count(outcome.rows)
    }

    /// `VACUUM [t]`: the data files it removed, per table.
    pub(super) async fn vacuum(
        &self,
        table: Option<&ObjectName>,
    ) -> Result<SendableRecordBatchStream> {
        let table = table.map(|t| self.resolve_name(t)).transpose()?;
        match &table {
            Some(name) => self.require_manage(name).await?,
            None => {
                self.require_admin(|| "vacuum every table".into()).await?;
            }
        }
        // Erasures a killed process committed but did not clean up finish
        // first: their old files are no snapshot's, but may hold erased values.
        let names = match &table {
            Some(name) => vec![name.clone()],
            None => {
                let mut names = Vec::new();
                for schema in self.warehouse().list_schemas().await? {
                    for t in self.warehouse().list_tables(&schema).await? {
                        if let Ok(name) = TableName::new(schema.clone(), t) {
                            names.push(name);
                        }
                    }
                }
                names
            }
        };
        for name in &names {
            if let Some(loaded) = self
                .warehouse()
                .try_load_table(&name.schema, &name.table)
                .await?
            {
                crate::lifecycle::finish_journals(&loaded).await;
            }
        }
        one_batch(self.store.writes().vacuum(table).await?)
    }

    /// `COPY t FROM 'file.parquet' | 'file.csv'`: columns matched by name, one snapshot.
    pub(super) async fn copy_from(
        &self,
        table_name: &ObjectName,
        path: &str,
    ) -> Result<SendableRecordBatchStream> {
        if let Some(temporary) = self.temporary_name(table_name) {
            return Err(Error::NotSupported(format!(
                "COPY FROM into temporary table {temporary}: COPY into a table, or ingest over Flight SQL"
            )));
        }
        let (name, table, target) = self.write_target(table_name).await?;
        let bad = |reason: String| Error::BadInput {
            table: name.to_string(),
            reason,
        };
        let lower = path.to_lowercase();
        if !lower.ends_with(".parquet") && !lower.ends_with(".csv") {
            return Err(bad(format!(
                "cannot tell the format of {path}: name it .parquet or .csv"
            )));
        }
        let resolved = self
            .files
            .check(self.warehouse().root(), path, Access::Read)?;
        if !resolved.is_file() {
            return Err(bad(format!("file {path} does not exist")));
        }
        let path = resolved
            .to_str()
            .ok_or_else(|| bad(format!("the path {path} is not UTF-8")))?;
        let reader = self.in_order();
        let frame = if lower.ends_with(".parquet") {
            reader
                .read_parquet(path, ParquetReadOptions::default())
                .await
        } else if lower.ends_with(".csv") {
            // Every column as text: the writer casts each value to its column's
            // type and names the row and column of one that does not fit.
            let schema = csv_text_schema(path).map_err(|e| bad(e.to_string()))?;
            reader
                .read_csv(path, CsvReadOptions::new().has_header(true).schema(&schema))
                .await
        } else {
            return Err(bad(format!(
                "cannot tell the format of {path}: name it .parquet or .csv"
            )));
        }
        .map_err(|e| bad(format!("cannot read {path}: {}", Error::from(e))))?;
        let stream = frame
            .execute_stream()
            .await
            .map_err(|e| bad(format!("cannot read {path}: {}", Error::from(e))))?;
        let what = format!("file {path}");
        let table_label = name.to_string();
        let input = stream.map(move |batch| match batch {
            Ok(batch) => ingest::by_name(&target, &batch, &what),
            Err(e) => Err(Error::BadInput {
                table: table_label.clone(),
                reason: format!("cannot read {what}: {}", Error::from(e)),
            }),
        });
        let source = HashMap::from([("pitlake.source".to_string(), path.to_string())]);
        let outcome = self
            .store
            .writes()
            .append(&name, &table, input, "copy", source)
            .await?;
        count(outcome.rows)
    }
}

/// Whether an INSERT goes through the stream: `VALUES` into an online
/// feature group.
fn streams_inserts(table: &iceberg::table::Table, values: &bool) -> bool {
    *values
        && catalog::FeatureGroup::from_properties(table.metadata().properties())
            .ok()
            .flatten()
            .is_some_and(|fg| fg.online)
}

/// Makes the cells of `INSERT ... VALUES` text (and says whether it is VALUES), so that rows may spell one
/// column differently (`TIMESTAMP '2024-01-01'` in one row, `'2024-01-02'` in
/// the next) and each value is then cast to the column's type by the writer,
/// which names the row of a value that does not fit. NULLs and binary columns
/// are left as written.
fn text_values(query: &mut ast::Query, positions: &[Option<usize>], table: &Schema) -> bool {
    let ast::SetExpr::Values(values) = query.body.as_mut() else {
        return false;
    };
    let binary: Vec<bool> = (0..positions.len())
        .map(|value_index| {
            positions
                .iter()
                .position(|p| *p == Some(value_index))
                .map(|column| table.field(column).data_type())
                .is_some_and(|t| {
                    // Not through text: bytes, and nested values (arrays,
                    // structs, maps), which text does not cast back to.
                    t.is_nested()
                        || matches!(
                            t,
                            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                        )
                })
        })
        .collect();
    for row in &mut values.rows {
        for (i, cell) in row.iter_mut().enumerate() {
            let is_null = matches!(cell, ast::Expr::Value(v) if v.value == ast::Value::Null);
            if is_null || binary.get(i).copied().unwrap_or(true) {
                continue;
            }
            let expr = std::mem::replace(cell, ast::Expr::value(ast::Value::Null));
            *cell = ast::Expr::Cast {
                kind: ast::CastKind::Cast,
                expr: Box::new(expr),
                data_type: ast::DataType::Varchar(None),
                array: false,
                format: None,
            };
        }
    }
    true
}

/// A schema of text columns named by the header line of a CSV file.
fn csv_text_schema(path: &str) -> Result<Schema> {
    use std::io::BufRead;
    let io = |source| Error::Io {
        path: path.to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut header = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut header)
        .map_err(io)?;
    let fields: Vec<Field> = header
        .trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|name| Field::new(name.trim().trim_matches('"'), DataType::Utf8, true))
        .collect();
    if header.trim().is_empty() {
        return Err(Error::Invalid(format!("{path} has no header line")));
    }
    Ok(Schema::new(fields))
}

/// `batch` with the columns of `schema`, found by name and cast to their type.
fn conform_by_name(
    schema: &arrow::datatypes::SchemaRef,
    batch: &RecordBatch,
    what: &str,
) -> Result<RecordBatch> {
    let bad = |reason: String| Error::BadInput {
        table: what.to_string(),
        reason,
    };
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(column) => arrow::compute::cast(column, field.data_type())
                .map_err(|e| bad(format!("column {}: {e}", field.name())))?,
            None if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            None => return Err(bad(format!("no column {}", field.name()))),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| bad(e.to_string()))
}

/// A temporary table a statement has just made: dropped again unless the
/// statement keeps it, so one that fails or is cancelled leaves none.
struct MadeTemporary<'a> {
    tables: &'a TempTables,
    name: String,
    table: Arc<TempTable>,
    kept: bool,
}

impl<'a> MadeTemporary<'a> {
    fn new(tables: &'a TempTables, name: &str, table: Arc<TempTable>) -> Self {
        MadeTemporary {
            tables,
            name: name.to_string(),
            table,
            kept: false,
        }
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for MadeTemporary<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.tables.drop_made(&self.name, &self.table);
        }
    }
}
