"""What Apache Superset does with a Flight SQL database, with the real
flightsql-dbapi driver: its SQLAlchemy 1.4 dialect (`datafusion://`) connects
(reading GetSqlInfo 0, 2, 3 and 504), lists schemas, tables and columns,
reflects a table and runs queries; then the plain DB-API. Prints a JSON
summary for tests/it/dbapi.rs to check.

    python dbapi_sqlalchemy.py HOST PORT USER PASSWORD

Expects schema `airlines` with feature group `delays` (carrier, airport,
event_time, delay_rate, flights) and table `labels` (carrier, airport, ts, y).
"""
import datetime
import json
import math
import sys

import sqlalchemy as sa

import flightsql
import flightsql.sqlalchemy  # registers `datafusion+flightsql` too

host, port, user, password = sys.argv[1:5]


def plain(value):
    """A cell as JSON: the driver returns pandas values (Timestamp, NaN for NULL)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value


def rows(result):
    return [[plain(v) for v in row] for row in result]


def url(scheme, pw=password):
    # `insecure` means plaintext gRPC (any non-empty value: the dialect takes
    # bool() of the string); without it the driver speaks TLS.
    return f"{scheme}://{user}:{pw}@{host}:{port}?insecure=True"


out = {}

# The URL Superset's docs give: the `datafusion` entry point of the package.
engine = sa.create_engine(url("datafusion"))
inspector = sa.inspect(engine)  # connects: the dialect's initialize() reads GetSqlInfo
out["sql_info"] = {str(k): v for k, v in engine.dialect.sql_info.items()}
out["quote"] = engine.dialect.identifier_preparer.initial_quote

out["schemas"] = inspector.get_schema_names()
out["tables"] = {s: inspector.get_table_names(schema=s) for s in out["schemas"]}
out["columns"] = [
    {"name": c["name"], "type": type(c["type"]).__name__, "nullable": c["nullable"]}
    for c in inspector.get_columns("delays", schema="airlines")
]
out["has_table"] = [
    inspector.has_table("delays", schema="airlines"),
    inspector.has_table("nothing", schema="airlines"),
]

with engine.connect() as conn:
    result = conn.execute(sa.text(
        "SELECT carrier, airport, event_time, delay_rate, flights FROM airlines.delays "
        "ORDER BY carrier, event_time"
    ))
    out["feature_group"] = {"keys": list(result.keys()), "rows": rows(result)}

    out["asof"] = rows(conn.execute(sa.text(
        """SELECT l.carrier, l.ts, d.delay_rate FROM airlines.labels l
           ASOF JOIN airlines.delays d MATCH_CONDITION (l.ts >= d.event_time)
           ON l.carrier = d.carrier AND l.airport = d.airport ORDER BY l.carrier"""
    )))

    # The dialect renders parameters as literals at compile time: values must
    # be in the statement (bindparams), not passed to execute() (which it
    # silently turns into NULL).
    out["text_bound"] = rows(conn.execute(
        sa.text("SELECT flights FROM airlines.delays WHERE carrier = :c ORDER BY flights")
        .bindparams(c="AA")
    ))

    # Superset's charts: a reflected table and SQLAlchemy Core, with a label
    # that needs the server's quote character.
    delays = sa.Table("delays", sa.MetaData(), autoload_with=conn, schema="airlines")
    query = (
        sa.select(
            delays.c.carrier,
            sa.func.count().label("n"),
            sa.func.max(delays.c.delay_rate).label("Max Delay"),
        )
        .where(delays.c.flights >= 10)
        .group_by(delays.c.carrier)
        .order_by(delays.c.carrier)
        .limit(10)
    )
    out["core_sql"] = str(query.compile(conn))
    out["core"] = rows(conn.execute(query))
    out["select_one"] = conn.execute(sa.text("SELECT 1")).scalar()

# The `datafusion+flightsql` name (registered when flightsql.sqlalchemy is imported).
with sa.create_engine(url("datafusion+flightsql")).connect() as conn:
    out["plus_url"] = rows(conn.execute(sa.text("SELECT count(*) FROM airlines.delays")))

# A wrong password fails at connect.
try:
    with sa.create_engine(url("datafusion", "wrong")).connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    out["wrong_password"] = "accepted"
except Exception as e:  # pyarrow.flight.FlightUnauthenticatedError, wrapped
    out["wrong_password"] = f"{type(e).__name__}: {e}"

# The plain DB-API.
client = flightsql.FlightSQLClient(
    host=host, port=int(port), user=user, password=password, insecure=True
)
with flightsql.connect(client) as conn:
    cur = conn.cursor()
    cur.execute(
        "SELECT carrier, count(*) AS n, sum(flights) AS flights FROM airlines.delays "
        "GROUP BY carrier ORDER BY carrier"
    )
    out["dbapi"] = {
        "description": [[name, t.__name__] for name, t in cur.description],
        "rows": rows(cur.fetchall()),
    }
    try:
        cur.execute("SELECT * FROM airlines.nothing")
        out["dbapi_error"] = "no error"
    except Exception as e:
        out["dbapi_error"] = str(e)
    # qmark parameters: a prepared statement, each value a dense union.
    try:
        cur.execute("SELECT flights FROM airlines.delays WHERE carrier = ? ORDER BY flights", ("AA",))
        out["dbapi_params"] = {"rows": rows(cur.fetchall())}
    except Exception as e:
        out["dbapi_params"] = {"error": str(e)}

print(json.dumps(out))
