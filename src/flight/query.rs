//! The query lifecycle: a statement or prepared statement is planned in
//! `GetFlightInfo` (to report its schema) and run in `DoGet`, streamed batch
//! by batch; the ticket carries the SQL, so the server holds no results.
//! Statements with effects (DDL, INSERT, COPY) run once, in `GetFlightInfo`,
//! and their small result travels in the ticket. Tickets are sealed to the
//! user who planned them (see `handle`). A query waits for a slot, is
//! cancelled after the time limit or by CancelFlightInfo, and stops when its
//! client goes away (its stream is dropped).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelStatus, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc,
    Ticket,
};
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::handle::Handle;
use super::parameters::conform;
use super::status::{df_status, to_status};
use crate::error::{Error, Result};
use crate::session::{Session, StatementResult, outbound_pieces};
use crate::sql::{Statement, bind_parameters, count_parameters, number_placeholders, parse_sql};

use super::service::{DoGetStream, PitlakeFlightSql};

/// Running queries and tickets cancelled before they ran.
#[derive(Debug, Default)]
pub(super) struct Running {
    queries: std::collections::HashMap<Vec<u8>, tokio::sync::watch::Sender<bool>>,
    cancelled: std::collections::VecDeque<Vec<u8>>,
}

/// The most recent parameter bindings, oldest dropped first.
#[derive(Debug, Default)]
pub(super) struct BoundParameters {
    pub(super) by_handle: std::collections::HashMap<Vec<u8>, RecordBatch>,
    order: std::collections::VecDeque<Vec<u8>>,
}

impl BoundParameters {
    const CAPACITY: usize = 4096;

    pub(super) fn insert(&mut self, handle: Vec<u8>, params: RecordBatch) {
        if self.by_handle.insert(handle.clone(), params).is_none() {
            self.order.push_back(handle);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.by_handle.remove(&old);
            }
        }
    }

    pub(super) fn remove(&mut self, handle: &[u8]) {
        if self.by_handle.remove(handle).is_some() {
            self.order.retain(|h| h != handle);
        }
    }
}

impl PitlakeFlightSql {
    /// A prepared statement's handle, opened for `caller`.
    pub(super) fn prepared(
        &self,
        caller: &Caller,
        handle: &[u8],
    ) -> std::result::Result<Prepared, Status> {
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
    pub(super) async fn execute_now(
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
    pub(super) async fn flight_info(
        &self,
        caller: &Caller,
        session: Session,
        sql: String,
        params: Option<RecordBatch>,
        descriptor: FlightDescriptor,
    ) -> std::result::Result<FlightInfo, Status> {
        // A query planned with its parameters unbound: described by that
        // plan, which the session keeps for the DoGet when it may.
        if let Some(values) = plan_values(params.as_ref()) {
            // A kept plan is looked up here; planning goes to the execution
            // runtime. Any failure is reported the way the statement with
            // its values in place reports it, below.
            let planned = match session.kept_plan(&sql).await {
                Ok(Some(plan)) => Ok(Some(plan)),
                _ => {
                    let planner = session.clone();
                    let text = sql.clone();
                    self.run(async move { planner.plan_query(&text).await })
                        .await
                }
            };
            if let Ok(Some(plan)) = planned
                && plan.binds(&values)
            {
                let schema = relaxed(&plan.schema());
                let handle = Handle::Query {
                    sql,
                    params,
                    types: None,
                };
                let ticket = self
                    .sealer
                    .seal(&handle, caller.user())
                    .map_err(to_status)?;
                return info(&schema, ticket, descriptor);
            }
        }
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
                // A small kept plan (SELECT 1, an online lookup) runs here:
                // handing it to the execution runtime and its batches back
                // cost more thread switches than the query itself.
                if let Some(values) = plan_values(params.as_ref())
                    && let Ok(Some(plan)) = session.kept_plan(&sql).await
                    && plan.is_small()
                    && plan.binds(&values)
                {
                    let stream = session
                        .execute_plan(&plan, values)
                        .await
                        .map_err(to_status)?;
                    let schema = stream.schema();
                    let held = (permit, finished);
                    let batches = stream.map(move |batch| {
                        let _held = &held;
                        batch.map_err(|e| FlightError::Tonic(Box::new(df_status(e))))
                    });
                    return Ok(Response::new(encode_result(schema, batches)));
                }
                // Batches cross to the gRPC runtime through a small channel: the
                // query runs ahead by two batches at most, and stops when the
                // client goes away (the receiver is dropped) or time is up.
                // One task on the execution runtime plans and streams, so a
                // small query crosses between the runtimes once each way.
                let (tx, rx) =
                    tokio::sync::mpsc::channel::<std::result::Result<RecordBatch, FlightError>>(2);
                let (opened_tx, opened) = tokio::sync::oneshot::channel::<Result<SchemaRef>>();
                let timeout = self.limits.query_timeout;
                self.executor.spawn(async move {
                    let _permit = permit;
                    let _finished = finished;
                    let mut stream = match open_query(&session, sql, params).await {
                        Ok(stream) => stream,
                        Err(e) => {
                            let _ = opened_tx.send(Err(e));
                            return;
                        }
                    };
                    if opened_tx.send(Ok(stream.schema())).is_err() {
                        return;
                    }
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
                let schema = opened
                    .await
                    .map_err(|_| Status::internal("query task failed"))?
                    .map_err(to_status)?;
                Ok(Response::new(encode_result(
                    schema,
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )))
            }
        }
    }

    pub(super) async fn statement_info(
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

    pub(super) async fn statement_stream(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request)?;
        let handle = self.sealer.open(&ticket.statement_handle, caller.user())?;
        let session = self.auth.session(&caller).await?;
        self.redeem(session, &ticket.statement_handle, handle).await
    }

    pub(super) async fn create_prepared(
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
            let text = sql.clone();
            match self
                .run(async move { session.plan_query(&text).await })
                .await?
            {
                Some(plan) => (plan.schema(), plan.parameter_types().to_vec()),
                None => (Arc::new(Schema::empty()), Vec::new()),
            }
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

    pub(super) async fn close_prepared(
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

    pub(super) async fn bind_prepared(
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

    pub(super) async fn prepared_info(
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
}

/// What a prepared statement's handle carries.
pub(super) struct Prepared {
    pub(super) sql: String,
    /// Parameters bound to it, if any.
    pub(super) params: Option<RecordBatch>,
    /// Its parameters' types, `$1` first (`None`: any).
    pub(super) types: Vec<Option<DataType>>,
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
    pub(super) fn cancel(
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

/// Plans (or takes the plan GetFlightInfo kept of) a ticket's query and
/// starts it.
async fn open_query(
    session: &Session,
    sql: String,
    params: Option<RecordBatch>,
) -> Result<datafusion::execution::SendableRecordBatchStream> {
    if let Some(values) = plan_values(params.as_ref())
        && let Some(plan) = session.kept_plan(&sql).await?
        && plan.binds(&values)
    {
        return session.execute_plan(&plan, values).await;
    }
    let statement = bound_statements(&sql, params.as_ref())?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Invalid("empty query".into()))?;
    session.execute_stream(statement).await
}

/// The values a query's plan takes for `params` (none without them);
/// `None` where only binding into the SQL text can tell what is wrong.
fn plan_values(params: Option<&RecordBatch>) -> Option<Vec<ScalarValue>> {
    match params {
        None => Some(Vec::new()),
        Some(params) if params.num_rows() > 0 => row_values(params, 0).ok(),
        Some(_) => None,
    }
}

fn row_values(batch: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>> {
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, row).map_err(Error::from))
        .collect()
}

fn concat_result(result: StatementResult) -> Result<RecordBatch> {
    concat_batches(&result.schema, &result.batches).map_err(Error::arrow("collecting the result"))
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
        .map_err(|e| to_status(Error::arrow("encoding the result schema")(e)))?
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

pub(super) fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = std::result::Result<RecordBatch, FlightError>> + Send + 'static,
) -> DoGetStream {
    // Batches with string or binary views are cut here, by the bytes their
    // rows use: the encoder would cut them by their buffers and send the
    // whole of those with every piece.
    let pieces = batches.flat_map(|batch| {
        // Half a message each, so that the encoder cuts them no further.
        let pieces =
            batch.and_then(|b| outbound_pieces(b, MESSAGE_BYTES / 2).map_err(FlightError::Arrow));
        let pieces: Vec<_> = match pieces {
            Ok(pieces) => pieces.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(pieces)
    });
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_max_flight_data_size(MESSAGE_BYTES)
            .with_schema(schema)
            .build(pieces)
            .map_err(Status::from),
    )
}

/// The data a Flight message carries at most (arrow-flight's default).
const MESSAGE_BYTES: usize = 2 << 20;

fn ipc_schema(schema: &Schema) -> std::result::Result<prost::bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| to_status(Error::arrow("encoding a schema")(e)))?;
    Ok(bytes)
}

/// The parameters of a `DoPut`: one batch (or none).
pub(super) async fn parameters(
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
            Ok(Some(concat_batches(&schema, many).map_err(|e| {
                to_status(Error::invalid_input(
                    "parameter batches of different schemas",
                )(e))
            })?))
        }
    }
}
