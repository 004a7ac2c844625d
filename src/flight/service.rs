//! pitlake's Flight SQL service: every command a SQL client uses, on top of a
//! session per authenticated client.
//!
//! Queries are planned in `GetFlightInfo` (to report their schema) and run in
//! `DoGet`, streamed batch by batch; the ticket carries the SQL, so the server
//! holds no results. Statements with effects (DDL, INSERT, COPY) run once, in
//! `GetFlightInfo` or `DoPut`, and their small result travels in the ticket.
//! Tickets are sealed to the user who planned them (see `handle`).
//! Execution runs on its own runtime, so a long query never starves gRPC; a
//! client that goes away drops its stream, which cancels its query.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt64Array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, Nullable, ProstMessageExt, Searchable, SqlInfo,
    TableExistsOption, TableNotExistOption, TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    Action, ActionType, CancelStatus, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::sync::Semaphore;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Authenticator, Caller};
use super::handle::{Handle, Sealer};
use super::online;
use super::parameters::conform;
use super::status::{df_status, to_status};
use crate::catalog::CATALOG_NAME;
use crate::error::{Error, Result};
use crate::session::{Session, StatementResult};
use crate::sql::{Statement, bind_parameters, count_parameters, number_placeholders, parse_sql};

type DoGetStream = <PitlakeFlightSql as FlightService>::DoGetStream;

/// Limits that keep one client from starving the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Queries running at once; more wait up to `queue_timeout`.
    pub max_concurrent_queries: usize,
    pub queue_timeout: Duration,
    /// Longest a query may run before it is cancelled.
    pub query_timeout: Duration,
    /// Memory one query may hold; more spills or fails with RESOURCE_EXHAUSTED.
    pub query_memory_bytes: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_queries: 16,
            queue_timeout: Duration::from_secs(30),
            query_timeout: Duration::from_secs(3600),
            query_memory_bytes: default_query_memory(),
        }
    }
}

/// 80% of the machine's memory shared by up to four queries at full size;
/// `None` where the machine does not say (no /proc/meminfo).
fn default_query_memory() -> Option<usize> {
    crate::session::machine_memory().map(|bytes| bytes / 5)
}

/// The Flight SQL service.
pub struct PitlakeFlightSql {
    auth: Arc<Authenticator>,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
    executor: tokio::runtime::Handle,
    queries: Arc<Semaphore>,
    limits: Limits,
    /// Parameters bound to prepared statements, by original handle, for
    /// clients that ignore the handle a binding returns (flightsql-dbapi).
    bound: std::sync::Mutex<BoundParameters>,
    /// Queries being streamed, by ticket, so CancelFlightInfo can stop them.
    running: Arc<std::sync::Mutex<Running>>,
    /// Seals tickets and statement handles to the user they were issued to.
    sealer: Sealer,
}

/// Running queries and tickets cancelled before they ran.
#[derive(Debug, Default)]
struct Running {
    queries: std::collections::HashMap<Vec<u8>, tokio::sync::watch::Sender<bool>>,
    cancelled: std::collections::VecDeque<Vec<u8>>,
}

/// The most recent parameter bindings, oldest dropped first.
#[derive(Debug, Default)]
struct BoundParameters {
    by_handle: std::collections::HashMap<Vec<u8>, RecordBatch>,
    order: std::collections::VecDeque<Vec<u8>>,
}

impl BoundParameters {
    const CAPACITY: usize = 4096;

    fn insert(&mut self, handle: Vec<u8>, params: RecordBatch) {
        if self.by_handle.insert(handle.clone(), params).is_none() {
            self.order.push_back(handle);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.by_handle.remove(&old);
            }
        }
    }

    fn remove(&mut self, handle: &[u8]) {
        if self.by_handle.remove(handle).is_some() {
            self.order.retain(|h| h != handle);
        }
    }
}

impl PitlakeFlightSql {
    pub fn new(
        auth: Arc<Authenticator>,
        executor: tokio::runtime::Handle,
        limits: Limits,
    ) -> Result<Self> {
        Ok(PitlakeFlightSql {
            auth,
            sql_info: sql_info()?,
            xdbc: xdbc_types()?,
            executor,
            queries: Arc::new(Semaphore::new(limits.max_concurrent_queries.max(1))),
            limits,
            bound: Default::default(),
            running: Default::default(),
            sealer: Sealer::new(),
        })
    }

    /// Who makes `request` (UNAUTHENTICATED without a valid token).
    fn caller<T>(&self, request: &Request<T>) -> std::result::Result<Caller, Status> {
        self.auth
            .authorize(request.metadata(), request.remote_addr())
    }

    /// The session of `request`'s caller.
    async fn session<T>(&self, request: &Request<T>) -> std::result::Result<Session, Status> {
        let caller = self.caller(request)?;
        self.auth.session(&caller).await
    }

    /// A prepared statement's handle, opened for `caller`.
    fn prepared(&self, caller: &Caller, handle: &[u8]) -> std::result::Result<Prepared, Status> {
        match self.sealer.open(handle, caller.user())? {
            Handle::Query { sql, params, types } => Ok(Prepared {
                sql,
                params,
                types: types.unwrap_or_default(),
            }),
            Handle::Done { .. } => Err(Status::invalid_argument(
                "not a prepared statement handle (a ticket of a statement already run)",
            )),
        }
    }

    /// Runs `work` on the execution runtime.
    async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> std::result::Result<T, Status> {
        self.executor
            .spawn(work)
            .await
            .map_err(|e| Status::internal(format!("query task failed: {e}")))?
            .map_err(to_status)
    }

    /// Waits for a query slot, or says the server is busy.
    async fn slot(&self) -> std::result::Result<tokio::sync::OwnedSemaphorePermit, Status> {
        match tokio::time::timeout(
            self.limits.queue_timeout,
            self.queries.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Status::resource_exhausted(format!(
                "the server is busy: {} queries are running; try again later",
                self.limits.max_concurrent_queries
            ))),
        }
    }

    /// Executes the statements of `sql` with `params` bound; the last result.
    async fn execute_now(
        &self,
        session: Session,
        sql: String,
        params: Option<RecordBatch>,
    ) -> std::result::Result<RecordBatch, Status> {
        self.run(async move {
            let mut last = None;
            for statement in bound_statements(&sql, params.as_ref())? {
                last = Some(session.execute(statement).await?);
            }
            let result = last.ok_or_else(|| Error::Invalid("no statement to run".into()))?;
            concat_result(result)
        })
        .await
    }

    /// FlightInfo for a query (planned, not run) or for a statement (run now).
    async fn flight_info(
        &self,
        caller: &Caller,
        session: Session,
        sql: String,
        params: Option<RecordBatch>,
        descriptor: FlightDescriptor,
    ) -> std::result::Result<FlightInfo, Status> {
        let statements = bound_statements(&sql, params.as_ref()).map_err(to_status)?;
        let (schema, handle) = if let [statement] = statements.as_slice()
            && Session::is_query(statement)
        {
            let statement = statement.clone();
            let planner = session.clone();
            let schema = self
                .run(async move { planner.query_schema(statement).await })
                .await?;
            let types = None;
            (relaxed(&schema), Handle::Query { sql, params, types })
        } else {
            let result = self.execute_now(session, sql, params).await?;
            (result.schema(), Handle::Done { result })
        };
        let ticket = self
            .sealer
            .seal(&handle, caller.user())
            .map_err(to_status)?;
        info(&schema, ticket, descriptor)
    }

    /// Streams a ticket's result.
    async fn redeem(
        &self,
        session: Session,
        ticket: &[u8],
        handle: Handle,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        match handle {
            Handle::Done { result } => Ok(Response::new(encode(
                result.schema(),
                futures::stream::iter([Ok(result)]),
            ))),
            Handle::Query { sql, params, .. } => {
                let (cancel_tx, mut cancelled) = tokio::sync::watch::channel(false);
                {
                    let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                    if running.cancelled.iter().any(|t| t == ticket) {
                        return Err(Status::cancelled(
                            "the query was cancelled (CancelFlightInfo)",
                        ));
                    }
                    running.queries.insert(ticket.to_vec(), cancel_tx);
                }
                let finished = Finished {
                    running: self.running.clone(),
                    ticket: ticket.to_vec(),
                };
                let permit = self.slot().await?;
                let statement = bound_statements(&sql, params.as_ref())
                    .map_err(to_status)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Status::invalid_argument("empty query"))?;
                let stream = self
                    .run(async move { session.execute_stream(statement).await })
                    .await?;
                let schema = stream.schema();
                // Batches cross to the gRPC runtime through a small channel: the
                // query runs ahead by two batches at most, and stops when the
                // client goes away (the receiver is dropped) or time is up.
                let (tx, rx) =
                    tokio::sync::mpsc::channel::<std::result::Result<RecordBatch, FlightError>>(2);
                let timeout = self.limits.query_timeout;
                self.executor.spawn(async move {
                    let _permit = permit;
                    let _finished = finished;
                    let mut stream = stream;
                    let deadline = tokio::time::sleep(timeout);
                    tokio::pin!(deadline);
                    loop {
                        let next = tokio::select! {
                            batch = stream.next() => batch,
                            _ = &mut deadline => {
                                let _ = tx.send(Err(FlightError::Tonic(Box::new(Status::deadline_exceeded(
                                    format!("query cancelled after the {}s limit", timeout.as_secs())))))).await;
                                return;
                            }
                            _ = tx.closed() => return,
                            _ = cancelled.changed() => {
                                let _ = tx.send(Err(FlightError::Tonic(Box::new(Status::cancelled(
                                    "the query was cancelled (CancelFlightInfo)"))))).await;
                                return;
                            }
                        };
                        let Some(batch) = next else { return };
                        let item = batch.map_err(|e| FlightError::Tonic(Box::new(df_status(e))));
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                });
                Ok(Response::new(encode_result(
                    schema,
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )))
            }
        }
    }
}

/// What a prepared statement's handle carries.
struct Prepared {
    sql: String,
    /// Parameters bound to it, if any.
    params: Option<RecordBatch>,
    /// Its parameters' types, `$1` first (`None`: any).
    types: Vec<Option<DataType>>,
}

/// Forgets a query's cancel switch when its stream ends, however it ends.
struct Finished {
    running: Arc<std::sync::Mutex<Running>>,
    ticket: Vec<u8>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.queries.remove(&self.ticket);
    }
}

impl PitlakeFlightSql {
    /// Cancels the queries of a FlightInfo's tickets: running ones stop,
    /// ones not started yet will not start. Only the caller's own tickets.
    fn cancel(
        &self,
        caller: &Caller,
        info: &FlightInfo,
    ) -> std::result::Result<CancelStatus, Status> {
        let mut handles = Vec::new();
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let Ok(any_message) = arrow_flight::sql::Any::decode(ticket.ticket.as_ref()) else {
                continue;
            };
            let Ok(Some(query)) = any_message.unpack::<TicketStatementQuery>() else {
                continue;
            };
            self.sealer.open(&query.statement_handle, caller.user())?;
            handles.push(query.statement_handle.to_vec());
        }
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let any = !handles.is_empty();
        for handle in handles {
            match running.queries.get(&handle) {
                Some(switch) => {
                    let _ = switch.send(true);
                }
                None => {
                    running.cancelled.push_back(handle);
                    while running.cancelled.len() > 4096 {
                        running.cancelled.pop_front();
                    }
                }
            }
        }
        Ok(if any {
            CancelStatus::Cancelled
        } else {
            CancelStatus::NotCancellable
        })
    }
}

/// Parses `sql` and binds one row of parameters into it.
fn bound_statements(sql: &str, params: Option<&RecordBatch>) -> Result<Vec<Statement>> {
    let mut statements = parse_sql(sql)?;
    if let Some(params) = params {
        if params.num_rows() == 0 {
            return Err(Error::Invalid(
                "parameters were bound without values (a batch of no rows)".into(),
            ));
        }
        let values = row_values(params, 0)?;
        for statement in &mut statements {
            match statement {
                Statement::Sql(s) => bind_parameters(s, &values)?,
                _ => {
                    return Err(Error::NotSupported(
                        "parameters in pitlake's own statements".into(),
                    ));
                }
            }
        }
    }
    Ok(statements)
}

fn row_values(batch: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>> {
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, row).map_err(Error::from))
        .collect()
}

fn concat_result(result: StatementResult) -> Result<RecordBatch> {
    concat_batches(&result.schema, &result.batches).map_err(|e| Error::Invalid(e.to_string()))
}

fn info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> std::result::Result<FlightInfo, Status> {
    let ticket = TicketStatementQuery {
        statement_handle: ticket.into(),
    };
    let ticket = Ticket::new(ticket.as_any().encode_to_vec());
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor))
}

fn metadata_info(
    schema: &Schema,
    command: impl ProstMessageExt,
    descriptor: FlightDescriptor,
) -> std::result::Result<FlightInfo, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor))
}

/// `schema` with every column nullable. The schema a query announces is
/// planned from its logical plan, the batches carry the physical plan's, and
/// the two can differ in nullability alone (`length(repeat('x', 10))`): the
/// ADBC driver refuses such a stream as inconsistent. Queries announce and
/// carry the relaxed form, which every batch fits.
fn relaxed(schema: &Schema) -> SchemaRef {
    let fields: Vec<arrow::datatypes::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// [`encode`] for a query's result, in its [`relaxed`] schema.
fn encode_result(
    schema: SchemaRef,
    batches: impl Stream<Item = std::result::Result<RecordBatch, FlightError>> + Send + 'static,
) -> DoGetStream {
    let schema = relaxed(&schema);
    let fitted = schema.clone();
    encode(
        schema,
        batches.map(move |batch| {
            batch.and_then(|b| b.with_schema(fitted.clone()).map_err(FlightError::Arrow))
        }),
    )
}

fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = std::result::Result<RecordBatch, FlightError>> + Send + 'static,
) -> DoGetStream {
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
}

fn one<E: std::fmt::Display>(
    batch: std::result::Result<RecordBatch, E>,
) -> std::result::Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(encode(
        batch.schema(),
        futures::stream::iter([Ok(batch)]),
    )))
}

fn ipc_schema(schema: &Schema) -> std::result::Result<prost::bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// The parameters of a `DoPut`: one batch (or none).
async fn parameters(
    request: Request<PeekableFlightDataStream>,
) -> std::result::Result<Option<RecordBatch>, Status> {
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
        request.into_inner().map_err(FlightError::from),
    )
    .try_collect()
    .await?;
    match batches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => {
            let schema = many[0].schema();
            Ok(Some(
                concat_batches(&schema, many)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            ))
        }
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

#[tonic::async_trait]
impl FlightSqlService for PitlakeFlightSql {
    type FlightService = PitlakeFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<
        Response<
            Pin<Box<dyn Stream<Item = std::result::Result<HandshakeResponse, Status>> + Send>>,
        >,
        Status,
    > {
        let client = request.remote_addr().map(|a| a.ip());
        let token = self.auth.handshake(request.metadata(), client).await?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let stream: Pin<Box<dyn Stream<Item = _> + Send>> =
            Box::pin(futures::stream::iter([Ok(reply)]));
        let mut response = Response::new(stream);
        if !token.is_empty() {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::internal("cannot encode the token"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request)?;
        let session = self.auth.session(&caller).await?;
        let info = self
            .flight_info(&caller, session, query.query, None, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let handle = self.sealer.open(&ticket.statement_handle, caller.user())?;
        let session = self.auth.session(&caller).await?;
        self.redeem(session, &ticket.statement_handle, handle).await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let session = self.session(&request).await?;
        let result = self.execute_now(session, command.query, None).await?;
        Ok(affected_rows(&result))
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let session = self.session(&request).await?;
        if command.temporary {
            return Err(Status::unimplemented("temporary tables are not supported"));
        }
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
        .map_err(|e| Error::Invalid(format!("ingest stream: {e}")));
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
        let schema = command.schema.clone();
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

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(&request)?;
        let session = self.auth.session(&caller).await?;
        let sql = query.query;
        let mut statements = parse_sql(&sql).map_err(to_status)?;
        let [statement] = statements.as_mut_slice() else {
            return Err(Status::invalid_argument(
                "a prepared statement holds exactly one statement",
            ));
        };
        let count = match statement {
            Statement::Sql(s) => {
                number_placeholders(s);
                count_parameters(s)
            }
            _ => 0,
        };
        let (dataset, mut types) = if Session::is_query(statement) {
            let statement = statement.clone();
            self.run(async move { session.describe_query(statement).await })
                .await?
        } else {
            (Arc::new(Schema::empty()), Vec::new())
        };
        types.resize(count.max(types.len()), None);
        let params = Schema::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Utf8),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let handle = Handle::Query {
            sql,
            params: None,
            types: Some(types),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self
                .sealer
                .seal(&handle, caller.user())
                .map_err(to_status)?
                .into(),
            dataset_schema: ipc_schema(&dataset)?,
            parameter_schema: ipc_schema(&params)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<(), Status> {
        let caller = self.caller(&request)?;
        self.prepared(&caller, &query.prepared_statement_handle)?;
        // Handles carry everything; only a remembered binding is freed.
        self.bound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&query.prepared_statement_handle);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<DoPutPreparedStatementResult, Status> {
        let caller = self.caller(&request)?;
        let Prepared { sql, types, .. } =
            self.prepared(&caller, &query.prepared_statement_handle)?;
        // Checked as they are bound, so a client hears of a mistake at once.
        let params = conform(parameters(request).await?, &types)?;
        if let Some(p) = &params {
            self.bound
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(query.prepared_statement_handle.to_vec(), p.clone());
        }
        let handle = Handle::Query {
            sql,
            params,
            types: Some(types),
        };
        let handle = self
            .sealer
            .seal(&handle, caller.user())
            .map_err(to_status)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request)?;
        let Prepared {
            sql,
            mut params,
            types,
        } = self.prepared(&caller, &command.prepared_statement_handle)?;
        if params.is_none() {
            params = self
                .bound
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .by_handle
                .get(command.prepared_statement_handle.as_ref())
                .cloned();
        }
        let params = conform(params, &types)?;
        let session = self.auth.session(&caller).await?;
        let info = self
            .flight_info(&caller, session, sql, params, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn do_put_prepared_statement_update(
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

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder().schema();
        Ok(Response::new(metadata_info(
            &schema,
            query,
            request.into_inner(),
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG_NAME);
        one(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(metadata_info(
            &schema,
            query,
            request.into_inner(),
        )?))
    }

    async fn do_get_schemas(
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

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(metadata_info(
            &schema,
            query,
            request.into_inner(),
        )?))
    }

    async fn do_get_tables(
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
                    "TABLE",
                    &listed.columns,
                )
                .map_err(Status::from)?;
        }
        one(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder().schema();
        Ok(Response::new(metadata_info(
            &schema,
            query,
            request.into_inner(),
        )?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        one(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Ok(Response::new(metadata_info(
            &schema,
            query,
            request.into_inner(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        one(query.into_builder(&self.sql_info).build())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        Ok(Response::new(metadata_info(
            &primary_keys_schema(),
            query,
            request.into_inner(),
        )?))
    }

    async fn do_get_primary_keys(
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

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder(&self.xdbc).schema();
        Ok(Response::new(metadata_info(
            &schema,
            query,
            request.into_inner(),
        )?))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        one(query.into_builder(&self.xdbc).build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: arrow_flight::sql::Any,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        Err(Status::invalid_argument(format!(
            "malformed ticket: {} is not a ticket this server issues; use the ticket of a FlightInfo",
            if message.type_url.is_empty() {
                "a message without a type".to_string()
            } else {
                format!("a {:?} message", message.type_url)
            }
        )))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let caller = self.caller(&request)?;
        let action = request.into_inner();
        let body = match action.r#type.as_str() {
            "CancelFlightInfo" => {
                let request =
                    arrow_flight::CancelFlightInfoRequest::decode(action.body.as_ref())
                        .map_err(|e| Status::invalid_argument(format!("CancelFlightInfo: {e}")))?;
                let info = request.info.unwrap_or_default();
                let status = self.cancel(&caller, &info)?;
                arrow_flight::CancelFlightInfoResult::new(status).encode_to_vec()
            }
            online::PING_ACTION => Vec::new(),
            // Lookups read memory only: answered here, not queued as queries.
            online::LOOKUP_ACTION => {
                let session = self.auth.session(&caller).await?;
                online::lookup(&session, &action.body)
                    .await
                    .map_err(to_status)?
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown action {other:?} (pitlake has {:?} and {:?} besides Flight SQL's)",
                    online::LOOKUP_ACTION,
                    online::PING_ACTION
                )));
            }
        };
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn list_custom_actions(&self) -> Option<Vec<std::result::Result<ActionType, Status>>> {
        Some(vec![
            Ok(ActionType {
                r#type: online::LOOKUP_ACTION.into(),
                description: "latest feature values of entities: JSON {\"group\": \"schema.group\", \"keys\": [...], \"columns\": [...]} -> Arrow IPC stream".into(),
            }),
            Ok(ActionType {
                r#type: online::PING_ACTION.into(),
                description: "an empty round trip".into(),
            }),
        ])
    }

    async fn do_put_fallback(
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
        let acks = online::stream_into(session, table, data).map_err(to_status)?;
        Ok(Response::new(Box::pin(acks)))
    }
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

fn sql_info() -> Result<SqlInfoData> {
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
    b.build().map_err(|e| Error::Invalid(e.to_string()))
}

fn xdbc_types() -> Result<XdbcTypeInfoData> {
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
    b.build().map_err(|e| Error::Invalid(e.to_string()))
}
