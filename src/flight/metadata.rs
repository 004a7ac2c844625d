//! Catalog metadata for SQL clients: GetSqlInfo, GetCatalogs, GetDbSchemas,
//! GetTables, GetTableTypes, GetPrimaryKeys and GetXdbcTypeInfo. The listings
//! go through the caller's session; the answers are small, built in one
//! batch.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, Nullable, ProstMessageExt,
    Searchable, SqlInfo, XdbcDataType,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use prost::Message;
use tonic::{Request, Response, Status};

use super::query::encode;
use super::service::{DoGetStream, PitlakeFlightSql};
use super::status::to_status;
use crate::catalog::CATALOG_NAME;
use crate::error::{Error, Result};

impl PitlakeFlightSql {
    /// The FlightInfo of a metadata call: its result schema and a ticket that
    /// carries the command back, for a signed-in caller.
    fn described(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: impl ProstMessageExt,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let ticket = Ticket::new(command.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| to_status(Error::arrow("encoding the result schema")(e)))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    pub(super) async fn info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.described(request, &schema, query)
    }

    pub(super) async fn list_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG_NAME);
        one(builder.build())
    }

    pub(super) async fn info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.described(request, &schema, query)
    }

    pub(super) async fn list_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let schemas = self
            .run(async move { session.list_schemas().await })
            .await?;
        let mut builder = query.into_builder();
        for schema in schemas {
            builder.append(CATALOG_NAME, schema);
        }
        one(builder.build())
    }

    pub(super) async fn info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.described(request, &schema, query)
    }

    pub(super) async fn list_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let include_schema = query.include_schema;
        let tables = self
            .run(async move { session.list_tables(include_schema).await })
            .await?;
        let mut builder = query.into_builder();
        for listed in tables {
            builder
                .append(
                    CATALOG_NAME,
                    listed.schema,
                    listed.table,
                    listed.kind,
                    &listed.columns,
                )
                .map_err(Status::from)?;
        }
        one(builder.build())
    }

    pub(super) async fn info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.described(request, &schema, query)
    }

    pub(super) async fn list_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        one(builder.build())
    }

    pub(super) async fn info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.described(request, &schema, query)
    }

    pub(super) async fn list_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        one(query.into_builder(&self.sql_info).build())
    }

    pub(super) async fn info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.described(request, &primary_keys_schema(), query)
    }

    pub(super) async fn list_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let (schema, table) = (query.db_schema.clone(), query.table.clone());
        let keys = self
            .run(async move { session.primary_keys(schema.as_deref(), &table).await })
            .await?;
        let (name, keys) = keys;
        let (schema, table) = (name.schema, name.table);
        let n = keys.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some(CATALOG_NAME); n])),
            Arc::new(StringArray::from(vec![Some(schema.as_str()); n])),
            Arc::new(StringArray::from(vec![table.as_str(); n])),
            Arc::new(StringArray::from(
                keys.iter().map(String::as_str).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec![Some("entity_key"); n])),
            Arc::new(Int32Array::from_iter_values(
                (1..=n as i32).collect::<Vec<_>>(),
            )),
        ];
        one(RecordBatch::try_new(
            Arc::new(primary_keys_schema()),
            columns,
        ))
    }

    pub(super) async fn info_xdbc_types(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc).schema();
        self.described(request, &schema, query)
    }

    pub(super) async fn list_xdbc_types(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        one(query.into_builder(&self.xdbc).build())
    }
}

fn one<E: std::fmt::Display>(
    batch: std::result::Result<RecordBatch, E>,
) -> std::result::Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| {
        to_status(Error::Internal(format!(
            "building the metadata result: {e}"
        )))
    })?;
    Ok(Response::new(encode(
        batch.schema(),
        futures::stream::iter([Ok(batch)]),
    )))
}

/// The Flight SQL schema of GetPrimaryKeys results.
fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

pub(super) fn sql_info() -> Result<SqlInfoData> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "pitlake");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(SqlInfo::SqlIdentifierCase, 1i32);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, 3i32);
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, 2i32);
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlMaxColumnNameLength, 1024i64);
    b.append(
        SqlInfo::SqlKeywords,
        [
            "ASOF",
            "MATCH_CONDITION",
            "FEATURE",
            "GROUP",
            "ENTITY",
            "EVENT",
            "VERSION",
            "TIMESTAMP",
            "ONLINE",
        ]
        .map(String::from)
        .to_vec(),
    );
    b.build()
        .map_err(|e| Error::Internal(format!("building SqlInfo: {e}")))
}

pub(super) fn xdbc_types() -> Result<XdbcTypeInfoData> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let base = |name: &str, t: XdbcDataType| XdbcTypeInfo {
        type_name: name.into(),
        data_type: t,
        column_size: None,
        literal_prefix: None,
        literal_suffix: None,
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: false,
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: t,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    };
    for (name, t) in [
        ("BOOLEAN", XdbcDataType::XdbcBit),
        ("INT", XdbcDataType::XdbcInteger),
        ("BIGINT", XdbcDataType::XdbcBigint),
        ("REAL", XdbcDataType::XdbcReal),
        ("DOUBLE", XdbcDataType::XdbcDouble),
        ("DECIMAL", XdbcDataType::XdbcDecimal),
        ("VARCHAR", XdbcDataType::XdbcVarchar),
        ("BINARY", XdbcDataType::XdbcBinary),
        ("DATE", XdbcDataType::XdbcDate),
        ("TIMESTAMP", XdbcDataType::XdbcTimestamp),
    ] {
        let mut info = base(name, t);
        if t == XdbcDataType::XdbcVarchar {
            info.literal_prefix = Some("'".into());
            info.literal_suffix = Some("'".into());
            info.case_sensitive = true;
        }
        b.append(info);
    }
    b.build()
        .map_err(|e| Error::Internal(format!("building the XDBC type info: {e}")))
}
