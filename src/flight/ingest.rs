//! Writes over DoPut: statement updates (one execution per parameter row of
//! a prepared update), bulk ingest (`CommandStatementIngest`, as ADBC's
//! `adbc_ingest` sends it) and record batches streamed into an online table.

use arrow::array::{RecordBatch, UInt64Array};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementUpdate,
    TableExistsOption, TableNotExistOption,
};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status};

use super::online;
use super::parameters::conform;
use super::query::{Prepared, parameters};
use super::service::PitlakeFlightSql;
use super::status::to_status;
use crate::catalog::CATALOG_NAME;
use crate::error::{Error, Result};
use crate::shared::TEMP_SCHEMA;

impl PitlakeFlightSql {
    pub(super) async fn update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let session = self.session(&request).await?;
        let result = self.execute_now(session, command.query, None).await?;
        Ok(affected_rows(&result))
    }

    pub(super) async fn ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let session = self.session(&request).await?;
        // A temporary table is the caller's session's own, in schema `temp`.
        let schema = if command.temporary {
            if command.schema.as_deref().is_some_and(|s| s != TEMP_SCHEMA) {
                return Err(Status::invalid_argument(format!(
                    "a temporary table lives in schema {TEMP_SCHEMA}, not {}",
                    command.schema.unwrap_or_default()
                )));
            }
            Some(TEMP_SCHEMA.to_string())
        } else {
            command.schema.clone()
        };
        if command
            .catalog
            .as_deref()
            .is_some_and(|c| c != CATALOG_NAME)
        {
            return Err(Status::not_found(format!(
                "catalog {} does not exist (it is {CATALOG_NAME})",
                command.catalog.unwrap_or_default()
            )));
        }
        let (create, append) = match &command.table_definition_options {
            Some(options) => {
                if options.if_exists() == TableExistsOption::Replace {
                    return Err(Status::unimplemented(
                        "ingest mode replace: drop the table first, or append",
                    ));
                }
                (
                    options.if_not_exist() == TableNotExistOption::Create,
                    options.if_exists() == TableExistsOption::Append,
                )
            }
            None => (false, true),
        };
        let batches = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        )
        .map_err(|e| Error::invalid_input("ingest stream")(e));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        // Decode on this runtime, write on the execution runtime.
        let forward = async move {
            let mut batches = std::pin::pin!(batches);
            while let Some(b) = batches.next().await {
                if tx.send(b).await.is_err() {
                    break;
                }
            }
        };
        let table = command.table.clone();
        let write = self.run(async move {
            session
                .ingest(
                    schema.as_deref(),
                    &table,
                    create,
                    append,
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )
                .await
        });
        let ((), rows) = tokio::join!(forward, write);
        Ok(rows? as i64)
    }

    pub(super) async fn prepared_update(
        &self,
        command: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let caller = self.caller(&request)?;
        let Prepared {
            sql,
            params: bound,
            types,
        } = self.prepared(&caller, &command.prepared_statement_handle)?;
        let params = conform(parameters(request).await?.or(bound), &types)?;
        let session = self.auth.session(&caller).await?;
        let Some(params) = params.clone().filter(|p| p.num_rows() > 1) else {
            let result = self.execute_now(session, sql, params).await?;
            return Ok(affected_rows(&result));
        };
        // One execution per parameter row.
        let mut total = 0;
        for row in 0..params.num_rows() {
            let result = self
                .execute_now(session.clone(), sql.clone(), Some(params.slice(row, 1)))
                .await?;
            total += affected_rows(&result);
        }
        Ok(total)
    }

    pub(super) async fn stream_put(
        &self,
        mut request: Request<PeekableFlightDataStream>,
        message: arrow_flight::sql::Any,
    ) -> std::result::Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        let session = self.session(&request).await?;
        let path = match request.get_mut().peek().await {
            Some(Ok(first)) => first
                .flight_descriptor
                .as_ref()
                .map(|d| d.path.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let table = match path.as_slice() {
            [kind, table] if kind == online::STREAM_PATH => table.clone(),
            [kind, schema, table] if kind == online::STREAM_PATH => format!("{schema}.{table}"),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "DoPut needs a Flight SQL command or the path [\"{}\", \"schema.table\"] (got {:?}{})",
                    online::STREAM_PATH,
                    path,
                    if message.type_url.is_empty() {
                        String::new()
                    } else {
                        format!(", command {}", message.type_url)
                    }
                )));
            }
        };
        // Peekable: the first message (descriptor and schema) was peeked, not lost.
        let data = request.into_inner().into_peekable();
        online::stream_target(&session, &table)
            .await
            .map_err(to_status)?;
        let acks = online::stream_into(session, table, data).map_err(to_status)?;
        Ok(Response::new(Box::pin(acks)))
    }
}

/// The `count` a write statement returned, or 0.
fn affected_rows(result: &RecordBatch) -> i64 {
    result
        .column_by_name("count")
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .map(|c| c.iter().flatten().sum::<u64>() as i64)
        .unwrap_or(0)
}
