//! flightsql-dbapi, the driver whose SQLAlchemy dialect (`datafusion://`)
//! Apache Superset uses, against a served warehouse: connect (GetSqlInfo),
//! list schemas, tables and columns, reflect a table, query a feature group
//! and an ASOF JOIN, and the plain DB-API. It pins SQLAlchemy 1.4, so it runs
//! in its own venv (`tests/python/requirements-dbapi.txt`).

use std::collections::HashMap;

use arrow_flight::sql::client::FlightSqlServiceClient;
use pitlake::flight::Users;
use serde_json::{Value, json};

use crate::flight::TestServer;
use crate::python::run_script_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superset_dialect_lists_and_queries() {
    let server = TestServer::start(Users::Passwords(HashMap::from([(
        "alice".to_string(),
        "s3cret".to_string(),
    )])))
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = FlightSqlServiceClient::new(channel);
    client
        .handshake("alice", "s3cret")
        .await
        .expect("handshake");
    for sql in [
        "CREATE SCHEMA airlines",
        "CREATE FEATURE GROUP airlines.delays (carrier VARCHAR NOT NULL, airport VARCHAR NOT NULL, event_time TIMESTAMP NOT NULL, delay_rate DOUBLE, flights BIGINT) ENTITY KEY (carrier, airport) EVENT TIME event_time",
        "INSERT INTO airlines.delays VALUES ('AA', 'JFK', '2024-01-01', 0.1, 10), ('AA', 'JFK', '2024-02-01', 0.2, 20), ('DL', 'ATL', '2024-01-01', 0.3, 30)",
        "CREATE TABLE airlines.labels (carrier VARCHAR, airport VARCHAR, ts TIMESTAMP, y INT)",
        "INSERT INTO airlines.labels VALUES ('AA', 'JFK', '2024-02-15', 1), ('DL', 'ATL', '2023-12-01', 0)",
        // A table of the same name elsewhere: the schema filters must hold.
        "CREATE SCHEMA scratch",
        "CREATE TABLE scratch.delays (note VARCHAR)",
    ] {
        client
            .execute_update(sql.into(), None)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let (host, port) = (server.addr.ip().to_string(), server.addr.port().to_string());
    let out = tokio::task::spawn_blocking(move || {
        run_script_with(
            "requirements-dbapi.txt",
            "dbapi_sqlalchemy.py",
            &[&host, &port, "alice", "s3cret"],
        )
    })
    .await
    .expect("script");
    let out: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));

    // The dialect's initialize() read these; a missing one is a KeyError.
    assert_eq!(
        out["sql_info"],
        json!({"0": "pitlake", "2": "58", "3": false, "504": "\""}),
        "{out:#}"
    );
    assert_eq!(out["quote"], "\"");

    let schemas = out["schemas"].as_array().expect("schemas");
    assert!(schemas.contains(&json!("airlines")), "{schemas:?}");
    assert!(schemas.contains(&json!("scratch")), "{schemas:?}");
    assert_eq!(out["tables"]["airlines"], json!(["delays", "labels"]));
    assert_eq!(out["tables"]["scratch"], json!(["delays"]));
    assert_eq!(
        out["columns"],
        json!([
            {"name": "carrier", "type": "TEXT", "nullable": false},
            {"name": "airport", "type": "TEXT", "nullable": false},
            {"name": "event_time", "type": "TIMESTAMP", "nullable": false},
            {"name": "delay_rate", "type": "FLOAT", "nullable": true},
            {"name": "flights", "type": "BIGINT", "nullable": true},
        ])
    );
    assert_eq!(out["has_table"], json!([true, false]));

    assert_eq!(
        out["feature_group"],
        json!({
            "keys": ["carrier", "airport", "event_time", "delay_rate", "flights"],
            "rows": [
                ["AA", "JFK", "2024-01-01T00:00:00", 0.1, 10],
                ["AA", "JFK", "2024-02-01T00:00:00", 0.2, 20],
                ["DL", "ATL", "2024-01-01T00:00:00", 0.3, 30],
            ],
        })
    );
    assert_eq!(
        out["asof"],
        json!([
            ["AA", "2024-02-15T00:00:00", 0.2],
            ["DL", "2023-12-01T00:00:00", null],
        ])
    );
    assert_eq!(out["text_bound"], json!([[10], [20]]));
    let core_sql = out["core_sql"].as_str().expect("core_sql");
    assert!(core_sql.contains("AS \"Max Delay\""), "{core_sql}");
    assert_eq!(out["core"], json!([["AA", 2, 0.2], ["DL", 1, 0.3]]));
    assert_eq!(out["select_one"], 1);
    assert_eq!(out["plus_url"], json!([[3]]));
    let wrong = out["wrong_password"].as_str().expect("wrong_password");
    assert!(wrong.contains("Unauthenticated"), "{wrong}");

    assert_eq!(
        out["dbapi"],
        json!({
            "description": [["carrier", "TEXT"], ["n", "BIGINT"], ["flights", "BIGINT"]],
            "rows": [["AA", 2, 30], ["DL", 1, 30]],
        })
    );
    let error = out["dbapi_error"].as_str().expect("dbapi_error");
    assert!(
        error.contains("nothing") && error.contains("not found"),
        "{error}"
    );
    // qmark parameters go through a prepared statement. flightsql-dbapi 0.2.2
    // binds with DoPut, ignores the handle DoPutPreparedStatementResult
    // returns and runs the original handle, and sends each value as a dense
    // union: the server remembers the binding by the original handle and
    // unwraps the unions.
    let params = &out["dbapi_params"];
    assert_eq!(params["rows"], json!([[10], [20]]), "{params}");

    server.stop().await;
}
