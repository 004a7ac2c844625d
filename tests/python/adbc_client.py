"""A data engineer and a data scientist over Flight SQL, with the real ADBC
driver: connect, create and fill a feature group, query, bind parameters,
browse the catalog, travel in time, ASOF JOIN, and read errors.

    python adbc_client.py grpc://127.0.0.1:PORT USER PASSWORD
"""
import sys

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa

uri, user, password = sys.argv[1:4]


def connect(pw=password):
    return flight_sql.connect(uri, db_kwargs={"username": user, "password": pw}, autocommit=True)


# A wrong password is rejected.
try:
    with connect("wrong") as bad:
        with bad.cursor() as cur:
            cur.execute("SELECT 1")
    raise SystemExit("a wrong password was accepted")
except adbc_driver_manager.Error as e:
    assert "UNAUTHENTICATED" in str(e) or "Unauthenticated" in str(e) or "invalid user" in str(e), e

with connect() as conn, conn.cursor() as cur:
    # The current catalog and schema, as the driver asks for them (Flight's
    # GetSessionOptions); USE changes the schema.
    assert (conn.adbc_current_catalog, conn.adbc_current_db_schema) == ("pitlake", "default"), \
        (conn.adbc_current_catalog, conn.adbc_current_db_schema)
    cur.execute("CREATE SCHEMA airlines")
    cur.execute("USE airlines")
    assert conn.adbc_current_db_schema == "airlines", conn.adbc_current_db_schema
    cur.execute("USE default")
    # ... and so does the driver's setter (Flight's SetSessionOptions): the
    # schema must exist, the catalog can only be pitlake's.
    conn.adbc_current_db_schema = "airlines"
    assert conn.adbc_current_db_schema == "airlines", conn.adbc_current_db_schema
    cur.execute("CREATE TABLE set_here AS SELECT 1 AS x")
    cur.execute("SELECT count(*) FROM airlines.set_here")
    assert cur.fetchone() == (1,)
    for setter, value in [("adbc_current_db_schema", "nowhere"),
                          ("adbc_current_db_schema", 'airlines"; DROP TABLE airlines.set_here; --'),
                          ("adbc_current_catalog", "other")]:
        try:
            setattr(conn, setter, value)
            raise SystemExit(f"{setter} = {value!r} was accepted")
        except adbc_driver_manager.Error as e:
            assert "INVALID_VALUE" in str(e) or "invalid value" in str(e).lower(), e
    assert conn.adbc_current_db_schema == "airlines", conn.adbc_current_db_schema
    conn.adbc_current_catalog = "pitlake"
    cur.execute("SELECT count(*) FROM airlines.set_here")
    assert cur.fetchone() == (1,)
    conn.adbc_current_db_schema = "default"
    assert conn.adbc_current_db_schema == "default", conn.adbc_current_db_schema
    cur.execute("DROP TABLE airlines.set_here")
    cur.execute(
        """CREATE FEATURE GROUP airlines.delays (
               carrier VARCHAR NOT NULL, airport VARCHAR NOT NULL,
               event_time TIMESTAMP NOT NULL, delay_rate DOUBLE)
           ENTITY KEY (carrier, airport) EVENT TIME event_time"""
    )

    # Bulk ingest a pyarrow table: one snapshot.
    from datetime import datetime
    features = pa.table({
        "carrier": ["AA", "AA", "DL"],
        "airport": ["JFK", "JFK", "ATL"],
        "event_time": pa.array([datetime(2024, 1, 1), datetime(2024, 2, 1), datetime(2024, 1, 1)], pa.timestamp("us")),
        "delay_rate": [0.1, 0.2, 0.3],
    })
    rows = cur.adbc_ingest("delays", features, mode="append", db_schema_name="airlines")
    assert rows == 3, rows

    cur.execute("SELECT carrier, airport, delay_rate FROM airlines.delays ORDER BY carrier, event_time")
    table = cur.fetch_arrow_table()
    assert table.num_rows == 3, table
    assert table.column("delay_rate").to_pylist() == [0.1, 0.2, 0.3], table

    # Parameters (qmark style, as DB-API says).
    cur.execute("SELECT delay_rate FROM airlines.delays WHERE carrier = ? AND event_time = ?",
                parameters=("AA", datetime(2024, 2, 1)))
    assert cur.fetchall() == [(0.2,)], "prepared statement"

    # A second load, then time travel to the first.
    cur.execute("INSERT INTO airlines.delays VALUES ('AA', 'JFK', '2024-03-01', 0.4)")
    cur.execute('SELECT snapshot_id FROM airlines."delays$snapshots" ORDER BY sequence_number')
    snapshots = [r[0] for r in cur.fetchall()]
    assert len(snapshots) == 2, snapshots
    cur.execute(f"SELECT count(*) FROM airlines.delays FOR VERSION AS OF {snapshots[0]}")
    assert cur.fetchone() == (3,)
    cur.execute("SELECT count(*) FROM airlines.delays")
    assert cur.fetchone() == (4,)

    # Columns the logical plan calls nullable and the batches do not: one
    # schema for both, or the driver calls the stream inconsistent.
    cur.execute("SELECT length(repeat('x', 10)) AS n, cardinality(range(1, 10)) AS c")
    assert cur.fetchall() == [(10, 9)], "nullability"

    # A training set: ASOF JOIN of labels against the feature group.
    cur.execute("CREATE TABLE airlines.labels (carrier VARCHAR, airport VARCHAR, ts TIMESTAMP, y INT)")
    cur.execute("INSERT INTO airlines.labels VALUES ('AA', 'JFK', '2024-02-15', 1), ('DL', 'ATL', '2023-12-01', 0)")
    cur.execute("""SELECT l.carrier, l.ts, d.delay_rate FROM airlines.labels l
                   ASOF JOIN airlines.delays d MATCH_CONDITION (l.ts >= d.event_time)
                   ON l.carrier = d.carrier AND l.airport = d.airport ORDER BY l.carrier""")
    assert cur.fetchall() == [("AA", datetime(2024, 2, 15), 0.2), ("DL", datetime(2023, 12, 1), None)]

    # A view: the training set for a BI tool that cannot send ASOF JOIN.
    cur.execute("""CREATE VIEW airlines.training AS
                   SELECT l.carrier, l.ts, d.delay_rate FROM airlines.labels l
                   ASOF JOIN airlines.delays d MATCH_CONDITION (l.ts >= d.event_time)
                   ON l.carrier = d.carrier AND l.airport = d.airport""")
    cur.execute("SELECT * FROM airlines.training ORDER BY carrier")
    assert cur.fetchall() == [("AA", datetime(2024, 2, 15), 0.2), ("DL", datetime(2023, 12, 1), None)]

    # The catalog, as BI tools browse it.
    objects = conn.adbc_get_objects(depth="columns", catalog_filter="pitlake").read_all().to_pylist()
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    tables = {t["table_name"]: t for t in schemas["airlines"]["db_schema_tables"]}
    assert {"delays", "labels", "training"} <= set(tables), tables
    assert tables["training"]["table_type"] == "VIEW", tables["training"]
    assert [c["column_name"] for c in tables["training"]["table_columns"]] == ["carrier", "ts", "delay_rate"]
    views = conn.adbc_get_objects(depth="tables", table_types_filter=["VIEW"]).read_all().to_pylist()
    listed = [t["table_name"] for c in views for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []]
    assert listed == ["training"], listed
    schema = conn.adbc_get_table_schema("delays", db_schema_filter="airlines")
    assert schema.names == ["carrier", "airport", "event_time", "delay_rate"], schema

    # A bad query's error says what is wrong.
    try:
        cur.execute("SELECT * FROM airlines.nothing")
        raise SystemExit("a query on a missing table succeeded")
    except adbc_driver_manager.Error as e:
        assert "nothing" in str(e) and "not found" in str(e), e
    try:
        cur.execute("INSERT INTO airlines.delays VALUES (NULL, 'JFK', '2024-03-01', 0.4)")
        raise SystemExit("a NULL key was accepted")
    except adbc_driver_manager.Error as e:
        assert "column carrier, row 1: NULL is not allowed" in str(e), e

# Labels as a temporary table: the connection's own, joined like a table,
# never a table of the warehouse, and unseen by other connections.
with connect() as conn, conn.cursor() as cur:
    labels = pa.table({
        "carrier": ["AA", "DL"],
        "airport": ["JFK", "ATL"],
        "ts": pa.array([datetime(2024, 6, 1), datetime(2024, 6, 1)], pa.timestamp("us")),
    })
    assert cur.adbc_ingest("my_labels", labels, mode="create", temporary=True) == 2
    cur.execute(
        """SELECT l.carrier, d.delay_rate FROM my_labels l
           ASOF JOIN airlines.delays d MATCH_CONDITION (l.ts >= d.event_time)
           ON l.carrier = d.carrier AND l.airport = d.airport ORDER BY l.carrier"""
    )
    joined = cur.fetch_arrow_table()
    assert joined.num_rows == 2, joined
    cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'my_labels' AND table_schema <> 'temp'")
    assert cur.fetchone()[0] == 0, "the temporary table reached the warehouse"
    with connect() as other, other.cursor() as cur2:
        try:
            cur2.execute("SELECT * FROM my_labels")
            cur2.fetchall()
            raise SystemExit("another connection saw a temporary table")
        except adbc_driver_manager.Error as e:
            assert "my_labels" in str(e), e

print("OK")
