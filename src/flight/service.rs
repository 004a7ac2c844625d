//! pitlake's Flight SQL service: every command a SQL client uses, on top of a
//! session per authenticated client. This file holds the service and its
//! dispatch (the `FlightSqlService` impl routing each call); the calls live
//! by concept:
//!
//! - `query`: statements and prepared statements, FlightInfo → ticket →
//!   DoGet stream, query slots, timeouts and cancellation;
//! - `metadata`: GetSqlInfo, GetCatalogs/DbSchemas/Tables/TableTypes,
//!   GetPrimaryKeys, GetXdbcTypeInfo;
//! - `ingest`: DoPut bulk ingest, updates, and streams into online tables.
//!
//! Execution runs on its own runtime, so a long query never starves gRPC.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use futures::Stream;
use prost::Message;
use tokio::sync::Semaphore;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Authenticator, Caller};
use super::handle::Sealer;
use super::metadata::{sql_info, xdbc_types};
use super::online;
use super::query::{BoundParameters, Running};
use super::session_actions::{self, CLOSE_SESSION, GET_SESSION_OPTIONS, SET_SESSION_OPTIONS};
use super::status::to_status;
use crate::error::Result;
use crate::session::Session;

pub(super) type DoGetStream = <PitlakeFlightSql as FlightService>::DoGetStream;

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
    pub(super) auth: Arc<Authenticator>,
    pub(super) sql_info: SqlInfoData,
    pub(super) xdbc: XdbcTypeInfoData,
    pub(super) executor: tokio::runtime::Handle,
    pub(super) queries: Arc<Semaphore>,
    pub(super) limits: Limits,
    /// Parameters bound to prepared statements, by original handle, for
    /// clients that ignore the handle a binding returns (flightsql-dbapi).
    pub(super) bound: std::sync::Mutex<BoundParameters>,
    /// Queries being streamed, by ticket, so CancelFlightInfo can stop them.
    pub(super) running: Arc<std::sync::Mutex<Running>>,
    /// Seals tickets and statement handles to the user they were issued to.
    pub(super) sealer: Sealer,
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
    pub(super) fn caller<T>(&self, request: &Request<T>) -> std::result::Result<Caller, Status> {
        self.auth
            .authorize(request.metadata(), request.remote_addr())
    }

    /// The session of `request`'s caller.
    pub(super) async fn session<T>(
        &self,
        request: &Request<T>,
    ) -> std::result::Result<Session, Status> {
        let caller = self.caller(request)?;
        self.auth.session(&caller).await
    }

    /// Runs `work` on the execution runtime.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> std::result::Result<T, Status> {
        self.executor
            .spawn(work)
            .await
            .map_err(|e| Status::internal(format!("query task failed: {e}")))?
            .map_err(to_status)
    }
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
        self.statement_info(query, request).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.statement_stream(ticket, request).await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        self.update(command, request).await
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        self.ingest(command, request).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<ActionCreatePreparedStatementResult, Status> {
        self.create_prepared(query, request).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> std::result::Result<(), Status> {
        self.close_prepared(query, request).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<DoPutPreparedStatementResult, Status> {
        self.bind_prepared(query, request).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.prepared_info(command, request).await
    }

    async fn do_put_prepared_statement_update(
        &self,
        command: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        self.prepared_update(command, request).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.info_catalogs(query, request).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.list_catalogs(query, request).await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.info_schemas(query, request).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.list_schemas(query, request).await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.info_tables(query, request).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.list_tables(query, request).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.info_table_types(query, request).await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.list_table_types(query, request).await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.info_sql_info(query, request).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.list_sql_info(query, request).await
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.info_primary_keys(query, request).await
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.list_primary_keys(query, request).await
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        self.info_xdbc_types(query, request).await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        self.list_xdbc_types(query, request).await
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
            // Flight's own: the ADBC driver sends it when a connection closes.
            CLOSE_SESSION => session_actions::close_result(self.auth.close(&caller)),
            // The ADBC driver's current catalog and schema (`USE` sets it).
            GET_SESSION_OPTIONS => {
                let session = self.auth.session(&caller).await?;
                session_actions::options_result(session.current_schema())
            }
            // The ADBC driver's setters of its current catalog and schema.
            SET_SESSION_OPTIONS => {
                let session = self.auth.session(&caller).await?;
                session_actions::set_options(&session, &action.body).await?
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
                // Its own names unquoted: the request log masks quoted text
                // (the client's), and these are no secret.
                return Err(Status::invalid_argument(format!(
                    "unknown action {other:?} (pitlake has {} and {} besides those of Flight SQL)",
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
                r#type: GET_SESSION_OPTIONS.into(),
                description: "Flight's GetSessionOptions: the current catalog and schema".into(),
            }),
            Ok(ActionType {
                r#type: SET_SESSION_OPTIONS.into(),
                description: "Flight's SetSessionOptions: sets the current schema (catalog: only pitlake)".into(),
            }),
            Ok(ActionType {
                r#type: CLOSE_SESSION.into(),
                description: "Flight's CloseSession: ends the caller's session and its token".into(),
            }),
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
        request: Request<PeekableFlightDataStream>,
        message: arrow_flight::sql::Any,
    ) -> std::result::Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        self.stream_put(request, message).await
    }
}
