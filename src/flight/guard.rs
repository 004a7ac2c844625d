//! The Flight service as clients reach it: arrow-flight's Flight SQL
//! dispatch, except that a ticket, descriptor or action body that does not
//! decode is the client's mistake (INVALID_ARGUMENT) rather than the
//! INTERNAL arrow-flight reports for a Flight SQL message it cannot parse;
//! and every call leaves one line in the server log (`pitlake::request`):
//! the call, the client's address, the code it got and how long it took to
//! answer (for streams: to the first response).

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, Command};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use prost::Message;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Instant;
use tonic::{Code, Request, Response, Status, Streaming};

use super::service::PitlakeFlightSql;

/// Checks what arrow-flight would decode, then hands the call over.
pub struct Guarded(pub PitlakeFlightSql);

/// A Flight SQL message in `bytes` that does not parse.
fn check(bytes: &[u8], what: &str) -> Result<(), Status> {
    // Bytes that are not an `Any` at all arrow-flight already refuses as
    // INVALID_ARGUMENT, or they are not meant for Flight SQL (custom actions).
    let Ok(any) = Any::decode(bytes) else {
        return Ok(());
    };
    Command::try_from(any)
        .map(drop)
        .map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}")))
}

/// Runs one call and logs its outcome.
async fn logged<T>(
    call: &'static str,
    peer: Option<SocketAddr>,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let started = Instant::now();
    let result = work.await;
    let micros = started.elapsed().as_micros() as u64;
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    match &result {
        Ok(_) => tracing::info!(target: "pitlake::request", call, peer, code = ?Code::Ok, micros),
        Err(status) => tracing::info!(
            target: "pitlake::request",
            call,
            peer,
            code = ?status.code(),
            micros,
            // Quoted text masked: a message quotes the client's literals
            // (a failed cast names its value), which an ERASE must be able
            // to take back, and which logs keep. Debug-quoted: no line
            // break of the client's starts a log line.
            error = ?without_quoted(status.message())
        ),
    }
    result
}

/// `message` with the text inside each pair of single or double quotes
/// replaced by `?` (an unclosed quote masks the rest).
fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(quote) if c == quote => {
                out.push('?');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '\'' || c == '"' {
                    open = Some(c);
                }
            }
        }
    }
    if open.is_some() {
        out.push('?');
    }
    out
}

#[tonic::async_trait]
impl FlightService for Guarded {
    type HandshakeStream = <PitlakeFlightSql as FlightService>::HandshakeStream;
    type ListFlightsStream = <PitlakeFlightSql as FlightService>::ListFlightsStream;
    type DoGetStream = <PitlakeFlightSql as FlightService>::DoGetStream;
    type DoPutStream = <PitlakeFlightSql as FlightService>::DoPutStream;
    type DoActionStream = <PitlakeFlightSql as FlightService>::DoActionStream;
    type ListActionsStream = <PitlakeFlightSql as FlightService>::ListActionsStream;
    type DoExchangeStream = <PitlakeFlightSql as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let peer = request.remote_addr();
        logged("handshake", peer, async move {
            FlightService::handshake(&self.0, request).await
        })
        .await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let peer = request.remote_addr();
        logged("list_flights", peer, async move {
            FlightService::list_flights(&self.0, request).await
        })
        .await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let peer = request.remote_addr();
        logged("get_flight_info", peer, async move {
            check(&request.get_ref().cmd, "command")?;
            FlightService::get_flight_info(&self.0, request).await
        })
        .await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let peer = request.remote_addr();
        logged("poll_flight_info", peer, async move {
            check(&request.get_ref().cmd, "command")?;
            FlightService::poll_flight_info(&self.0, request).await
        })
        .await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let peer = request.remote_addr();
        logged("get_schema", peer, async move {
            check(&request.get_ref().cmd, "command")?;
            FlightService::get_schema(&self.0, request).await
        })
        .await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let peer = request.remote_addr();
        logged("do_get", peer, async move {
            if Any::decode(request.get_ref().ticket.as_ref()).is_err() {
                return Err(Status::invalid_argument(
                    "malformed ticket: not a Flight SQL ticket; use the ticket of a FlightInfo",
                ));
            }
            check(&request.get_ref().ticket, "ticket")?;
            FlightService::do_get(&self.0, request).await
        })
        .await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let peer = request.remote_addr();
        logged("do_put", peer, async move {
            FlightService::do_put(&self.0, request).await
        })
        .await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let peer = request.remote_addr();
        logged("do_exchange", peer, async move {
            FlightService::do_exchange(&self.0, request).await
        })
        .await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let peer = request.remote_addr();
        logged("do_action", peer, async move {
            check(&request.get_ref().body, "action body")?;
            FlightService::do_action(&self.0, request).await
        })
        .await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let peer = request.remote_addr();
        logged("list_actions", peer, async move {
            FlightService::list_actions(&self.0, request).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::without_quoted;

    #[test]
    fn logged_messages_keep_no_quoted_text() {
        assert_eq!(
            without_quoted("Cannot cast string 'SECRET' to value of Int32"),
            "Cannot cast string '?' to value of Int32"
        );
        assert_eq!(
            without_quoted("table \"a\nb\" not found; 'open"),
            "table \"?\" not found; '?"
        );
        assert_eq!(without_quoted("syntax error at 3"), "syntax error at 3");
    }
}
