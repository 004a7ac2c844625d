//! What a hostile or careless client can do to `pitlake serve`: guess
//! passwords, sign in without end, redeem another user's ticket, send
//! garbage tickets, bind the wrong parameters. Each test asserts the exact
//! status code, a message naming the problem, and that the server still
//! answers afterwards. Clients speak raw Flight (tonic statuses, own headers).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementQuery,
    DoPutPreparedStatementResult, DoPutUpdateResult, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{Action, FlightDescriptor, FlightInfo, HandshakeRequest, Ticket};
use base64::Engine;
use futures::TryStreamExt;
use pitlake::flight::{ServerConfig, SignInDelay, TokenPolicy, Users};
use pitlake::output::cells;
use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::flight::TestServer;

fn users() -> Users {
    Users::Passwords(HashMap::from([
        ("alice".to_string(), "s3cret".to_string()),
        ("bob".to_string(), "hunter2".to_string()),
    ]))
}

async fn server(config: ServerConfig) -> TestServer {
    TestServer::start_with(ServerConfig {
        users: users(),
        ..config
    })
    .await
}

/// A Flight client speaking from `from` (another loopback address is another
/// client address to the server), with the bearer token it signed in with.
struct Client {
    inner: FlightServiceClient<Channel>,
    token: Option<String>,
}

impl Client {
    async fn connect(server: &TestServer, from: &str) -> Self {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .expect("endpoint")
            .local_address(Some(from.parse::<IpAddr>().expect("address")))
            .connect()
            .await
            .expect("connect");
        Client {
            inner: FlightServiceClient::new(channel),
            token: None,
        }
    }

    /// Signs in with `authorization: Basic <credentials>` exactly as given.
    async fn sign_in_raw(&mut self, credentials: &str) -> Result<String, Status> {
        let mut request = Request::new(futures::stream::iter([HandshakeRequest::default()]));
        request.metadata_mut().insert(
            "authorization",
            format!("Basic {credentials}").parse().expect("header"),
        );
        let response = self.inner.handshake(request).await?;
        let token = response
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .expect("a bearer token")
            .to_string();
        self.token = Some(token.clone());
        Ok(token)
    }

    /// Signs in with padded base64, as RFC 7617 says.
    async fn sign_in(&mut self, user: &str, password: &str) -> Result<String, Status> {
        let credentials = base64::prelude::BASE64_STANDARD.encode(format!("{user}:{password}"));
        self.sign_in_raw(&credentials).await
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        request
    }

    async fn plan(&mut self, sql: &str) -> Result<FlightInfo, Status> {
        let command = CommandStatementQuery {
            query: sql.into(),
            transaction_id: None,
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let request = self.request(descriptor);
        Ok(self.inner.get_flight_info(request).await?.into_inner())
    }

    async fn fetch(&mut self, ticket: Ticket) -> Result<Vec<RecordBatch>, Status> {
        let request = self.request(ticket);
        let stream = self.inner.do_get(request).await?.into_inner();
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
            .try_collect()
            .await
            .map_err(|e| match e {
                FlightError::Tonic(status) => *status,
                other => panic!("not a status: {other}"),
            })
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, Status> {
        let info = self.plan(sql).await?;
        self.fetch(ticket(&info)).await
    }

    async fn prepare(&mut self, sql: &str) -> Result<ActionCreatePreparedStatementResult, Status> {
        let body = ActionCreatePreparedStatementRequest {
            query: sql.into(),
            transaction_id: None,
        };
        let action = Action::new("CreatePreparedStatement", body.as_any().encode_to_vec());
        let request = self.request(action);
        let results: Vec<arrow_flight::Result> = self
            .inner
            .do_action(request)
            .await?
            .into_inner()
            .try_collect()
            .await?;
        let any = Any::decode(results[0].body.as_ref()).expect("Any");
        Ok(any.unpack().expect("unpack").expect("a prepared statement"))
    }

    /// Binds `params` to a prepared query; the handle to execute.
    async fn bind(&mut self, handle: &[u8], params: RecordBatch) -> Result<Vec<u8>, Status> {
        let command = CommandPreparedStatementQuery {
            prepared_statement_handle: handle.to_vec().into(),
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let data: Vec<_> = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(futures::stream::iter([Ok(params)]))
            .try_collect()
            .await
            .expect("encode");
        let request = self.request(futures::stream::iter(data));
        let mut results = self.inner.do_put(request).await?.into_inner();
        let result = results.message().await?.expect("a result");
        let result = DoPutPreparedStatementResult::decode(result.app_metadata.as_ref())
            .expect("DoPutPreparedStatementResult");
        Ok(result.prepared_statement_handle.expect("a handle").to_vec())
    }

    async fn execute_prepared(&mut self, handle: &[u8]) -> Result<Vec<RecordBatch>, Status> {
        let command = CommandPreparedStatementQuery {
            prepared_statement_handle: handle.to_vec().into(),
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let request = self.request(descriptor);
        let info = self.inner.get_flight_info(request).await?.into_inner();
        self.fetch(ticket(&info)).await
    }

    async fn update_prepared(&mut self, handle: &[u8], params: RecordBatch) -> Result<i64, Status> {
        let command = CommandPreparedStatementUpdate {
            prepared_statement_handle: handle.to_vec().into(),
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let data: Vec<_> = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(futures::stream::iter([Ok(params)]))
            .try_collect()
            .await
            .expect("encode");
        let request = self.request(futures::stream::iter(data));
        let mut results = self.inner.do_put(request).await?.into_inner();
        let result = results.message().await?.expect("a result");
        Ok(DoPutUpdateResult::decode(result.app_metadata.as_ref())
            .expect("DoPutUpdateResult")
            .record_count)
    }

    async fn cancel(&mut self, info: &FlightInfo) -> Result<(), Status> {
        let body = arrow_flight::CancelFlightInfoRequest::new(info.clone()).encode_to_vec();
        let request = self.request(Action::new("CancelFlightInfo", body));
        self.inner.do_action(request).await?;
        Ok(())
    }

    /// Flight's `CloseSession`; its result's status.
    async fn close_session(&mut self) -> Result<i32, Status> {
        let request = self.request(Action::new("CloseSession", Vec::new()));
        let mut results = self.inner.do_action(request).await?.into_inner();
        let result = results.message().await?.expect("a result");
        // CloseSessionResult { status = 1 }: a varint field 1.
        match result.body.as_ref() {
            [] => Ok(0),
            [0x08, status] => Ok(i32::from(*status)),
            other => panic!("not a CloseSessionResult: {other:?}"),
        }
    }

    /// Flight's `SetSessionOptions` with a raw body; its result's raw body.
    async fn set_session_options(&mut self, body: Vec<u8>) -> Result<Vec<u8>, Status> {
        let request = self.request(Action::new("SetSessionOptions", body));
        let mut results = self.inner.do_action(request).await?.into_inner();
        let result = results.message().await?.expect("a result");
        Ok(result.body.to_vec())
    }

    /// The server still answers this client.
    async fn still_answers(&mut self) {
        let rows = self.query("SELECT 7").await.expect("the server answers");
        assert_eq!(cells(&rows).expect("cells"), vec![vec!["7"]]);
    }
}

fn ticket(info: &FlightInfo) -> Ticket {
    info.endpoint[0].ticket.clone().expect("ticket")
}

#[track_caller]
fn expect_status(result: Result<impl std::fmt::Debug, Status>, code: Code, message: &str) {
    let status = result.expect_err("an error");
    assert_eq!(status.code(), code, "{status}");
    assert!(
        status.message().contains(message),
        "{:?} does not say {message:?}",
        status.message()
    );
}

/// One parameter column, named as the ADBC driver names them.
fn params(column: arrow::array::ArrayRef) -> RecordBatch {
    let schema = Schema::new(vec![Field::new("0", column.data_type().clone(), true)]);
    RecordBatch::try_new(Arc::new(schema), vec![column]).expect("params")
}

/// Sequential wrong passwords wait longer and longer (two attackers at
/// once, so that a wait that blocked a thread would hold up the server), many
/// at once are refused past the longest wait, and meanwhile a correct user
/// from another address signs in at once and runs queries.
#[tokio::test(flavor = "current_thread")]
async fn login_flood_is_slowed_without_slowing_others() {
    let delay = SignInDelay {
        base: Duration::from_millis(25),
        max: Duration::from_millis(400),
        ..SignInDelay::default()
    };
    let server = server(ServerConfig {
        sign_in_delay: delay.clone(),
        ..ServerConfig::default()
    })
    .await;
    let mut attacker = Client::connect(&server, "127.0.0.1").await;
    let mut other_attacker = Client::connect(&server, "127.0.0.5").await;
    let mut bob = Client::connect(&server, "127.0.0.2").await;

    /// 12 wrong passwords; `tried` counts them as they are answered.
    async fn flood(
        client: &mut Client,
        user: &str,
        tried: tokio::sync::watch::Sender<usize>,
    ) -> (Duration, Vec<Duration>) {
        let started = Instant::now();
        let mut took = Vec::new();
        for i in 0..12 {
            let at = Instant::now();
            expect_status(
                client.sign_in(user, &format!("guess{i}")).await,
                Code::Unauthenticated,
                "invalid user name or password",
            );
            took.push(at.elapsed());
            tried.send_modify(|n| *n += 1);
        }
        (started.elapsed(), took)
    }
    let (alice_tried, alice_tries) = tokio::sync::watch::channel(0);
    let (mallory_tried, mallory_tries) = tokio::sync::watch::channel(0);
    let meanwhile = async {
        // Once both floods are slowed, sign in and query while they last.
        for tries in [&alice_tries, &mallory_tries] {
            tries.clone().wait_for(|n| *n >= 2).await.expect("flooding");
        }
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let at = Instant::now();
            bob.sign_in("bob", "hunter2").await.expect("bob signs in");
            slowest = slowest.max(at.elapsed());
            bob.still_answers().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let tried = [*alice_tries.borrow(), *mallory_tries.borrow()];
        assert!(
            tried.iter().all(|n| *n < 12),
            "the floods were over: {tried:?}"
        );
        slowest
    };
    let (alice_flood, mallory_flood, bob_slowest) = tokio::join!(
        flood(&mut attacker, "alice", alice_tried),
        flood(&mut other_attacker, "mallory", mallory_tried),
        meanwhile
    );
    // Waits of 0, 25, 50, 100, 200, then 400 ms before each check.
    for (total, took) in [alice_flood, mallory_flood] {
        assert!(
            total >= Duration::from_millis(3000),
            "12 wrong passwords took {total:?}"
        );
        assert!(
            took[6..].iter().all(|t| *t >= Duration::from_millis(390)),
            "{took:?}"
        );
    }
    assert!(
        bob_slowest < Duration::from_millis(100),
        "bob waited {bob_slowest:?} to sign in during the flood"
    );

    // The attacker's address is slowed for every name, bob's included.
    expect_status(
        attacker.sign_in("alice", "one more").await,
        Code::Unauthenticated,
        "invalid user name or password",
    );
    let mut bob_at_attacker = Client::connect(&server, "127.0.0.1").await;
    let at = Instant::now();
    bob_at_attacker
        .sign_in("bob", "hunter2")
        .await
        .expect("bob signs in");
    assert!(
        at.elapsed() >= Duration::from_millis(200),
        "{:?}",
        at.elapsed()
    );

    // Many guesses at once go no faster than one after another: past the
    // longest wait they are refused without their password being checked.
    // On a name and address never tried: waits of 0, 25, 75, 175 and 375 ms.
    let (checked, took) = guesses_at_once(&server, "127.0.0.6", "carol", 30).await;
    let allowed = 5 + (took.as_millis() / delay.max.as_millis()) as usize;
    assert!(
        checked <= allowed,
        "{checked} of 30 guesses at once were checked in {took:?}"
    );
    // On alice, whose every attempt now waits the longest wait.
    let (checked, took) = guesses_at_once(&server, "127.0.0.3", "alice", 30).await;
    let allowed = 2 + (took.as_millis() / delay.max.as_millis()) as usize;
    assert!(
        checked <= allowed,
        "{checked} of 30 guesses at once were checked in {took:?}"
    );

    // Once the waits are over, alice signs in: a success clears her name.
    tokio::time::sleep(delay.max * 2).await;
    let mut alice = Client::connect(&server, "127.0.0.4").await;
    alice
        .sign_in("alice", "s3cret")
        .await
        .expect("alice signs in");
    alice.still_answers().await;
    let at = Instant::now();
    let mut again = Client::connect(&server, "127.0.0.4").await;
    again.sign_in("alice", "s3cret").await.expect("alice again");
    assert!(at.elapsed() < delay.max / 4, "{:?}", at.elapsed());
    server.stop().await;
}

/// `n` wrong passwords for `user` at once, each on its own connection from
/// `from`: how many were checked (the others refused), and how long all took.
async fn guesses_at_once(
    server: &TestServer,
    from: &str,
    user: &str,
    n: usize,
) -> (usize, Duration) {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(Client::connect(server, from).await);
    }
    let at = Instant::now();
    let outcomes = futures::future::join_all(
        clients
            .iter_mut()
            .enumerate()
            .map(|(i, client)| async move { client.sign_in(user, &format!("at once {i}")).await }),
    )
    .await;
    let took = at.elapsed();
    let refused = outcomes
        .iter()
        .filter(|r| {
            r.as_ref().is_err_and(|s| {
                s.code() == Code::ResourceExhausted
                    && s.message().contains(
                        "too many failed sign-ins for this user name or from this address: try again in",
                    )
            })
        })
        .count();
    let checked = outcomes
        .iter()
        .filter(|r| {
            r.as_ref().is_err_and(|s| {
                s.code() == Code::Unauthenticated && s.message() == "invalid user name or password"
            })
        })
        .count();
    assert_eq!(refused + checked, n, "{outcomes:?}");
    (checked, took)
}

/// The ADBC driver sends base64 without padding: `bob:hunter2` is 11 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpadded_basic_credentials_sign_in() {
    let server = server(ServerConfig::default()).await;
    let unpadded = base64::prelude::BASE64_STANDARD_NO_PAD.encode("bob:hunter2");
    assert_eq!(unpadded, "Ym9iOmh1bnRlcjI");
    let padded = base64::prelude::BASE64_STANDARD.encode("bob:hunter2");
    for credentials in [&unpadded, &padded] {
        let mut bob = Client::connect(&server, "127.0.0.1").await;
        bob.sign_in_raw(credentials).await.expect("bob signs in");
        bob.still_answers().await;
    }
    let mut wrong = Client::connect(&server, "127.0.0.1").await;
    let unpadded_wrong = base64::prelude::BASE64_STANDARD_NO_PAD.encode("bob:hunter3");
    expect_status(
        wrong.sign_in_raw(&unpadded_wrong).await,
        Code::Unauthenticated,
        "invalid user name or password",
    );
    expect_status(
        wrong.sign_in_raw("Ym9iOmh1bnRlcjI=x").await,
        Code::Unauthenticated,
        "malformed Basic credentials",
    );
    let mut bob = Client::connect(&server, "127.0.0.2").await;
    bob.sign_in_raw(&unpadded).await.expect("bob signs in");
    bob.still_answers().await;
    server.stop().await;
}

/// At most `max_tokens` tokens: a user signing in again and again evicts its
/// own least recently used tokens, not other users'; a token unused for the
/// idle timeout expires, one in use does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_capped_and_expire_when_idle() {
    let idle = Duration::from_millis(600);
    let server = server(ServerConfig {
        tokens: TokenPolicy {
            max_tokens: 3,
            idle_timeout: idle,
            ..TokenPolicy::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut bob = Client::connect(&server, "127.0.0.1").await;
    bob.sign_in("bob", "hunter2").await.expect("bob");
    let mut alices = Vec::new();
    for _ in 0..5 {
        let mut alice = Client::connect(&server, "127.0.0.1").await;
        alice.sign_in("alice", "s3cret").await.expect("alice");
        alices.push(alice);
    }
    for evicted in &mut alices[..3] {
        expect_status(
            evicted.query("SELECT 1").await,
            Code::Unauthenticated,
            "token evicted: the server keeps at most 3 signed-in tokens",
        );
    }
    bob.still_answers().await;
    alices[3].still_answers().await;
    alices[4].still_answers().await;

    // alices[4] is used all along; alices[3] is left idle.
    let started = Instant::now();
    while started.elapsed() < idle + idle / 2 {
        tokio::time::sleep(idle / 4).await;
        alices[4].still_answers().await;
    }
    expect_status(
        alices[3].query("SELECT 1").await,
        Code::Unauthenticated,
        "token expired (unused for longer than 0.6 s): authenticate again",
    );
    alices[4].still_answers().await;
    // Signing in again works, and the server still answers.
    alices[3].sign_in("alice", "s3cret").await.expect("again");
    alices[3].still_answers().await;
    server.stop().await;
}

/// A ticket is the user's who planned it: bob can neither redeem nor cancel
/// alice's, nor use her prepared statement, nor forge one in her name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_from_alice_is_refused_to_bob() {
    let server = server(ServerConfig::default()).await;
    let mut alice = Client::connect(&server, "127.0.0.1").await;
    alice.sign_in("alice", "s3cret").await.expect("alice");
    let mut bob = Client::connect(&server, "127.0.0.2").await;
    bob.sign_in("bob", "hunter2").await.expect("bob");

    let info = alice.plan("SELECT 42 AS answer").await.expect("plan");
    let refused = "issued to another user";
    for _ in 0..2 {
        expect_status(
            bob.fetch(ticket(&info)).await,
            Code::PermissionDenied,
            refused,
        );
    }
    expect_status(bob.cancel(&info).await, Code::PermissionDenied, refused);
    let rows = alice
        .fetch(ticket(&info))
        .await
        .expect("alice redeems hers");
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["42"]]);

    // The result of a statement run at planning travels in its ticket too.
    let info = alice.plan("CREATE SCHEMA s1").await.expect("create");
    expect_status(
        bob.fetch(ticket(&info)).await,
        Code::PermissionDenied,
        refused,
    );

    let prepared = alice.prepare("SELECT $1 + 1").await.expect("prepare");
    let handle = prepared.prepared_statement_handle.to_vec();
    let one = params(Arc::new(Int64Array::from(vec![1])));
    expect_status(
        bob.bind(&handle, one.clone()).await,
        Code::PermissionDenied,
        refused,
    );
    expect_status(
        bob.execute_prepared(&handle).await,
        Code::PermissionDenied,
        refused,
    );
    let bound = alice.bind(&handle, one).await.expect("alice binds");
    expect_status(
        bob.execute_prepared(&bound).await,
        Code::PermissionDenied,
        refused,
    );
    let rows = alice.execute_prepared(&bound).await.expect("alice runs it");
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["2"]]);

    // Rewriting the owner in bob's own ticket breaks its seal.
    let info = bob.plan("SELECT 1").await.expect("plan");
    let any = Any::decode(ticket(&info).ticket.as_ref()).expect("Any");
    let query: TicketStatementQuery = any.unpack().expect("unpack").expect("ticket");
    let sealed = query.statement_handle.to_vec();
    let (payload, tag) = sealed.split_at(sealed.len() - 32);
    let mut forged = String::from_utf8(payload.to_vec())
        .expect("JSON")
        .replace("\"bob\"", "\"alice\"")
        .into_bytes();
    assert_ne!(forged, payload);
    forged.extend_from_slice(tag);
    let forged = TicketStatementQuery {
        statement_handle: forged.into(),
    };
    expect_status(
        alice
            .fetch(Ticket::new(forged.as_any().encode_to_vec()))
            .await,
        Code::InvalidArgument,
        "not one this server issued",
    );
    alice.still_answers().await;
    bob.still_answers().await;
    server.stop().await;
}

/// Tickets that are not this server's, however broken, are INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tickets_are_invalid_argument() {
    let server = server(ServerConfig::default()).await;
    let mut alice = Client::connect(&server, "127.0.0.1").await;
    alice.sign_in("alice", "s3cret").await.expect("alice");
    let real = ticket(&alice.plan("SELECT 1").await.expect("plan"));
    let real_handle = Any::decode(real.ticket.as_ref())
        .expect("Any")
        .unpack::<TicketStatementQuery>()
        .expect("unpack")
        .expect("ticket")
        .statement_handle;
    let statement = |handle: Vec<u8>| {
        TicketStatementQuery {
            statement_handle: handle.into(),
        }
        .as_any()
        .encode_to_vec()
    };
    let garbage_any = Any {
        type_url: TicketStatementQuery::type_url().into(),
        value: vec![0xff; 16].into(),
    }
    .encode_to_vec();
    let unknown = Any {
        type_url: "type.googleapis.com/nothing.Here".into(),
        value: Vec::new().into(),
    }
    .encode_to_vec();
    let not_a_ticket = CommandStatementQuery {
        query: "SELECT 1".into(),
        transaction_id: None,
    }
    .as_any()
    .encode_to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not protobuf", vec![0xff; 64]),
        ("garbage in a ticket's Any", garbage_any),
        ("unknown message", unknown),
        ("a command, not a ticket", not_a_ticket),
        ("empty handle", statement(Vec::new())),
        (
            "JSON handle",
            statement(br#"{"query":"SELECT 2"}"#.to_vec()),
        ),
        ("random handle", statement(vec![7; 200])),
        (
            "truncated handle",
            statement(real_handle[..real_handle.len() - 1].to_vec()),
        ),
    ];
    for (what, bytes) in cases {
        let status = alice.fetch(Ticket::new(bytes)).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status}");
        assert!(
            status.message().contains("malformed ticket"),
            "{what}: {status}"
        );
    }
    // A command whose body does not parse: arrow-flight would say INTERNAL.
    let garbage_command = Any {
        type_url: CommandStatementQuery::type_url().into(),
        value: vec![0xff; 16].into(),
    }
    .encode_to_vec();
    let request = alice.request(FlightDescriptor::new_cmd(garbage_command));
    expect_status(
        alice.inner.get_flight_info(request).await,
        Code::InvalidArgument,
        "malformed command",
    );
    // A prepared statement handle made up by the client.
    expect_status(
        alice.execute_prepared(br#"{"query":"SELECT 1"}"#).await,
        Code::InvalidArgument,
        "malformed ticket or statement handle",
    );
    alice.still_answers().await;
    assert_eq!(
        cells(&alice.fetch(real).await.expect("the real ticket")).expect("cells"),
        vec![vec!["1"]]
    );
    server.stop().await;
}

/// Parameters that do not fit the statement are INVALID_ARGUMENT naming the
/// parameter, its type and the value, or the counts; never INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_parameter_types_and_counts_are_invalid_argument() {
    let server = server(ServerConfig::default()).await;
    let mut alice = Client::connect(&server, "127.0.0.1").await;
    alice.sign_in("alice", "s3cret").await.expect("alice");
    for sql in [
        "CREATE FEATURE GROUP fg (k BIGINT, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t",
        "INSERT INTO fg VALUES (1, '2024-01-01', 1.5), (2, '2024-01-02', 2.5)",
    ] {
        alice
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let prepared = alice
        .prepare("SELECT v FROM fg WHERE k = $1")
        .await
        .expect("prepare");
    let handle = prepared.prepared_statement_handle.to_vec();

    let text = params(Arc::new(StringArray::from(vec!["abc"])));
    expect_status(
        alice.bind(&handle, text).await,
        Code::InvalidArgument,
        "parameter $1 is Int64, and 'abc' (Utf8) does not convert to it",
    );
    let fraction = params(Arc::new(Float64Array::from(vec![1.5])));
    expect_status(
        alice.bind(&handle, fraction).await,
        Code::InvalidArgument,
        "parameter $1 is Int64, and 1.5 (Float64) does not convert to it",
    );
    let two = Schema::new(vec![
        Field::new("0", DataType::Int64, true),
        Field::new("1", DataType::Int64, true),
    ]);
    let two = RecordBatch::try_new(
        Arc::new(two),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int64Array::from(vec![2])),
        ],
    )
    .expect("two");
    expect_status(
        alice.bind(&handle, two.clone()).await,
        Code::InvalidArgument,
        "the statement takes 1 parameter ($1) but 2 values were bound",
    );
    expect_status(
        alice.execute_prepared(&handle).await,
        Code::InvalidArgument,
        "the statement takes 1 parameter ($1) but none were bound",
    );

    // Values that convert exactly are taken.
    for value in [
        params(Arc::new(StringArray::from(vec!["2"]))),
        params(Arc::new(Float64Array::from(vec![2.0]))),
        params(Arc::new(Int64Array::from(vec![2]))),
    ] {
        let bound = alice.bind(&handle, value).await.expect("binds");
        let rows = alice.execute_prepared(&bound).await.expect("runs");
        assert_eq!(cells(&rows).expect("cells"), vec![vec!["2.5"]]);
    }

    // Updates: the counts are checked too.
    let insert = alice
        .prepare("INSERT INTO fg VALUES (?, ?, ?)")
        .await
        .expect("prepare insert");
    let insert = insert.prepared_statement_handle.to_vec();
    expect_status(
        alice.update_prepared(&insert, two).await,
        Code::InvalidArgument,
        "the statement takes 3 parameters ($1 to $3) but 2 values were bound",
    );
    alice.still_answers().await;
    server.stop().await;
}

/// Flight's `CloseSession` (the ADBC driver sends it when a connection
/// closes) ends the caller's session: its token is refused from then on,
/// saying why, another user's session is untouched, and signing in again
/// starts afresh without the closed session's temporary tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_session_ends_the_token_and_its_state() {
    let server = server(ServerConfig::default()).await;
    let mut alice = Client::connect(&server, "127.0.0.1").await;
    alice.sign_in("alice", "s3cret").await.expect("alice");
    let mut bob = Client::connect(&server, "127.0.0.1").await;
    bob.sign_in("bob", "hunter2").await.expect("bob");
    for client in [&mut alice, &mut bob] {
        client
            .query("CREATE TEMPORARY TABLE mine AS SELECT 1 AS x")
            .await
            .expect("temporary table");
    }
    assert_eq!(alice.close_session().await.expect("close"), 1, "CLOSED");
    expect_status(
        alice.query("SELECT 1").await,
        Code::Unauthenticated,
        "session closed by the client (CloseSession): authenticate again",
    );
    // Closing it twice is refused the same way, not an error of another kind.
    expect_status(
        alice.close_session().await,
        Code::Unauthenticated,
        "session closed by the client",
    );
    let rows = bob.query("SELECT x FROM mine").await.expect("bob's table");
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["1"]]);
    alice.sign_in("alice", "s3cret").await.expect("again");
    expect_status(
        alice.query("SELECT x FROM mine").await,
        Code::InvalidArgument,
        "mine",
    );
    alice.still_answers().await;
    server.stop().await;
}

/// Without sign-in a session is its connection's: `CloseSession` forgets it,
/// and the connection's next request starts a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_session_without_sign_in_starts_afresh() {
    let server = TestServer::start_with(ServerConfig::default()).await;
    let mut client = Client::connect(&server, "127.0.0.1").await;
    client
        .query("CREATE TEMPORARY TABLE mine AS SELECT 1 AS x")
        .await
        .expect("temporary table");
    client.query("SELECT x FROM mine").await.expect("its table");
    assert_eq!(client.close_session().await.expect("close"), 1, "CLOSED");
    expect_status(
        client.query("SELECT x FROM mine").await,
        Code::InvalidArgument,
        "mine",
    );
    client.still_answers().await;
    server.stop().await;
}

/// A length-delimited protobuf field (short contents only).
fn field(number: u8, contents: &[u8]) -> Vec<u8> {
    [&[number << 3 | 2, contents.len() as u8][..], contents].concat()
}

/// A one-entry protobuf map `{key: value}` as field 1 of its message: the
/// shape of `SetSessionOptionsRequest` (values `SessionOptionValue`) and of
/// `SetSessionOptionsResult` (values `Error`).
fn map_of_one(key: &str, value: &[u8]) -> Vec<u8> {
    field(1, &[field(1, key.as_bytes()), field(2, value)].concat())
}

/// `SetSessionOptions` from a careless or hostile client: an undecodable
/// body is INVALID_ARGUMENT, an unknown option INVALID_NAME, a value of the
/// wrong kind or a missing schema INVALID_VALUE, a schema name that is SQL
/// stays a name; the session keeps its schema through all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_session_options_refuses_what_it_cannot_set() {
    let server = server(ServerConfig::default()).await;
    let mut alice = Client::connect(&server, "127.0.0.1").await;
    alice.sign_in("alice", "s3cret").await.expect("alice");
    alice.query("CREATE SCHEMA s").await.expect("schema");
    alice
        .query("CREATE TABLE s.t AS SELECT 1 AS x")
        .await
        .expect("table");

    // `SessionOptionValue { string_value }`, and an option refused with
    // `Error { value: code }`.
    let text = |t: &str| field(1, t.as_bytes());
    let refused = |name: &str, code: u8| map_of_one(name, &[0x08, code]);
    let set = alice.set_session_options(map_of_one("schema", &text("s")));
    assert_eq!(set.await.expect("set"), Vec::<u8>::new(), "no errors");
    let rows = alice.query("SELECT x FROM t").await.expect("t in s");
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["1"]]);

    expect_status(
        alice.set_session_options(vec![0xff, 0xff, 0xff]).await,
        Code::InvalidArgument,
        "SetSessionOptions",
    );
    let cases = [
        (map_of_one("nonsense", &text("x")), refused("nonsense", 1)),
        // bool_value = true (field 2).
        (map_of_one("schema", &[0x10, 0x01]), refused("schema", 2)),
        (map_of_one("schema", &text("missing")), refused("schema", 2)),
        (
            map_of_one("schema", &text("s\"; DROP TABLE s.t; --")),
            refused("schema", 2),
        ),
        (map_of_one("catalog", &text("other")), refused("catalog", 2)),
    ];
    for (request, expected) in cases {
        let answer = alice.set_session_options(request).await.expect("answered");
        assert_eq!(answer, expected);
    }
    let rows = alice
        .query("SELECT x FROM t")
        .await
        .expect("still in s, t still there");
    assert_eq!(cells(&rows).expect("cells"), vec![vec!["1"]]);
    // Unset, the schema is the default one again.
    let set = alice.set_session_options(map_of_one("schema", &[]));
    assert_eq!(set.await.expect("unset"), Vec::<u8>::new());
    expect_status(
        alice.query("SELECT x FROM t").await,
        Code::InvalidArgument,
        "t",
    );
    alice.still_answers().await;
    server.stop().await;
}
