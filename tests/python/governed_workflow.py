"""The seeds' governed workflow over Flight SQL with the real ADBC driver, and
a leak hunt along it.

An admin onboards a producer and a consumer team. The producer makes a feature
group, fills it, puts a row filter and a mask on it and publishes it. The
consumer finds it, is refused its rows (on every read path), asks for access
with a reason; the producer approves. The consumer then builds a training set
with an ASOF JOIN, reproduces it by time travel after new rows land, and never
meets a row the filter hides or a value the mask covers — not in a result, not
through the online store, not in an error message. The admin reads it all in
the audit log.

    python governed_workflow.py grpc://127.0.0.1:PORT ADMIN ADMIN_PASSWORD

Prints OK at the end; any failure raises.
"""
import sys
from datetime import datetime, timedelta, timezone

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa

uri, admin_user, admin_password = sys.argv[1:4]

# What the rows the filter hides hold, and what the mask covers: none of it
# may ever reach the consumer.
HIDDEN = ["hidden_region", "777", "secret@hidden.example"]
MASKED = "ops@lh.example"


def connect(user, password):
    return flight_sql.connect(uri, db_kwargs={"username": user, "password": password}, autocommit=True)


def rows(cur, sql):
    cur.execute(sql)
    return cur.fetch_arrow_table().to_pylist()


def refused(cur, sql, *needles):
    """`sql` fails with a permission error naming each needle; the message
    leaks nothing hidden."""
    try:
        cur.execute(sql)
        cur.fetch_arrow_table()
    except adbc_driver_manager.Error as e:
        message = str(e)
        assert "permission denied" in message.lower(), (sql, message)
        for needle in needles:
            assert needle in message, (sql, needle, message)
        clean(message, sql)
        return message
    raise AssertionError(f"{sql} was not refused")


def clean(text, where):
    for secret in HIDDEN + [MASKED]:
        assert secret not in str(text), f"{where} shows {secret!r}: {text}"


admin = connect(admin_user, admin_password)
a = admin.cursor()
for sql in [
    "CREATE SCHEMA airlines",
    "CREATE ROLE producers",
    "CREATE ROLE ml_team",
    "CREATE USER pat PASSWORD 'pat-secret-1' IN ROLE producers",
    "CREATE USER dana PASSWORD 'dana-secret-1' IN ROLE ml_team",
    "GRANT CREATE ON SCHEMA airlines TO ROLE producers",
]:
    a.execute(sql)

# The producer's feature group: EU carriers for the team, one US row hidden,
# contacts masked.
producer = connect("pat", "pat-secret-1")
p = producer.cursor()
p.execute(
    """CREATE FEATURE GROUP airlines.carrier_delays (
           carrier VARCHAR NOT NULL, region VARCHAR, event_time TIMESTAMP NOT NULL,
           delay_rate DOUBLE, cnt BIGINT, contact VARCHAR)
       ENTITY KEY (carrier) EVENT TIME event_time
       WITH (description = 'Daily share of delayed flights per carrier')"""
)
first = pa.table({
    "carrier": ["LH", "LH", "AF", "AF"],
    "region": ["eu", "eu", "eu", "hidden_region"],
    "event_time": pa.array([datetime(2026, 1, 1), datetime(2026, 1, 3), datetime(2026, 1, 2), datetime(2026, 1, 4)],
                           pa.timestamp("us")),
    "delay_rate": [0.10, 0.12, 0.30, 0.35],
    "cnt": [10, 12, 30, 777],
    "contact": [MASKED, MASKED, "ops@af.example", "secret@hidden.example"],
})
assert p.adbc_ingest("carrier_delays", first, mode="append", db_schema_name="airlines") == 4
p.execute("ALTER FEATURE GROUP airlines.carrier_delays SET ONLINE")
p.execute("ALTER FEATURE GROUP airlines.carrier_delays SET ROW FILTER (region = 'eu' OR is_member('producers'))")
p.execute("ALTER FEATURE GROUP airlines.carrier_delays ALTER COLUMN contact SET MASK "
          "(CASE WHEN is_member('producers') THEN contact ELSE '***' END)")

consumer = connect("dana", "dana-secret-1")
c = consumer.cursor()

# Unpublished, the group does not exist for the consumer.
assert rows(c, "SHOW FEATURE GROUPS") == [], "an unpublished group is listed"
try:
    c.execute("REQUEST ACCESS ON FEATURE GROUP airlines.carrier_delays REASON 'delay model'")
    raise AssertionError("a request on an unpublished group was taken")
except adbc_driver_manager.Error as e:
    assert "does not exist" in str(e), e

p.execute("PUBLISH FEATURE GROUP airlines.carrier_delays")

# Published: she finds and reads its description ...
listed = rows(c, "SHOW FEATURE GROUPS")
assert [(r["feature_group"], r["published"], r["description"]) for r in listed] == [
    ("carrier_delays", True, "Daily share of delayed flights per carrier")], listed
described = {r["property"]: r["value"] for r in rows(c, "DESCRIBE FEATURE GROUP airlines.carrier_delays")}
assert described["description"] == "Daily share of delayed flights per carrier", described
assert "location" not in described, described
assert described["published"] == "by pat", described

# ... and every path to its rows is refused, saying which privilege on what.
labels = ("(SELECT * FROM (VALUES ('LH', TIMESTAMP '2026-01-05 00:00:00'), "
          "('AF', TIMESTAMP '2026-01-05 00:00:00')) AS t(carrier, ts))")
training_set = (f"SELECT l.carrier, f.delay_rate, f.region FROM {labels} l "
                "ASOF JOIN airlines.carrier_delays{travel} f MATCH_CONDITION (l.ts >= f.event_time) "
                "ON l.carrier = f.carrier ORDER BY l.carrier")
for sql in [
    "SELECT * FROM airlines.carrier_delays",
    "SELECT count(*) FROM airlines.carrier_delays",
    training_set.format(travel=""),
    "SELECT * FROM airlines.carrier_delays FOR TIMESTAMP AS OF now()",
    'SELECT * FROM airlines."carrier_delays$snapshots"',
]:
    refused(c, sql, "dana", "SELECT", "airlines.carrier_delays", "REQUEST ACCESS")
for sql in [
    "SELECT * FROM online.airlines.carrier_delays WHERE carrier = 'AF'",
    "INSERT INTO airlines.carrier_delays VALUES ('XX', 'eu', TIMESTAMP '2026-01-01 00:00:00', 0, 0, 'x')",
]:
    try:
        c.execute(sql)
        c.fetch_arrow_table()
        raise AssertionError(f"{sql} was not refused")
    except adbc_driver_manager.Error as e:
        clean(str(e), sql)

# She asks for her team, with a reason.
c.execute("REQUEST ACCESS ON FEATURE GROUP airlines.carrier_delays FOR ROLE ml_team "
          "REASON 'delay model, Q3 training set'")
request = c.fetch_arrow_table().to_pylist()
assert [r["status"] for r in request] == ["pending"], request
request_id = request[0]["request_id"]
refused(c, f"APPROVE ACCESS REQUEST {request_id}", "dana", f"access request {request_id}")

# The producer sees it and approves.
pending = rows(p, "SELECT request_id, requested_by, grantee, reason, status FROM system.access_requests")
assert pending == [{"request_id": request_id, "requested_by": "dana", "grantee": "ml_team",
                    "reason": "delay model, Q3 training set", "status": "pending"}], pending
p.execute(f"APPROVE ACCESS REQUEST {request_id}")
subscriptions = rows(c, "SELECT feature_group, subscriber, approved_by FROM system.subscriptions")
assert subscriptions == [{"feature_group": "airlines.carrier_delays", "subscriber": "ml_team",
                          "approved_by": "pat"}], subscriptions

# The consumer reads the rows that exist for her, contacts masked.
seen = rows(c, "SELECT carrier, region, cnt, contact FROM airlines.carrier_delays ORDER BY carrier, event_time")
assert seen == [
    {"carrier": "AF", "region": "eu", "cnt": 30, "contact": "***"},
    {"carrier": "LH", "region": "eu", "cnt": 10, "contact": "***"},
    {"carrier": "LH", "region": "eu", "cnt": 12, "contact": "***"},
], seen
clean(seen, "a plain read")

# Her training set: AF's latest row before the label is hidden, so she gets
# AF's latest visible row, never the hidden one.
built_at = datetime.now(timezone.utc)
trained = rows(c, training_set.format(travel=""))
assert trained == [
    {"carrier": "AF", "delay_rate": 0.30, "region": "eu"},
    {"carrier": "LH", "delay_rate": 0.12, "region": "eu"},
], trained

# New rows land; time travel reproduces the training set as it was built.
later = pa.table({
    "carrier": ["LH"], "region": ["eu"],
    "event_time": pa.array([datetime(2026, 1, 4)], pa.timestamp("us")),
    "delay_rate": [0.50], "cnt": [50], "contact": [MASKED],
})
assert p.adbc_ingest("carrier_delays", later, mode="append", db_schema_name="airlines") == 1
now = rows(c, training_set.format(travel=""))
assert now[1]["delay_rate"] == 0.50, now
stamp = (built_at + timedelta(milliseconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
again = rows(c, training_set.format(travel=f" FOR TIMESTAMP AS OF TIMESTAMP '{stamp}'"))
assert again == trained, (again, trained)

# The leak hunt under the filter: aggregates, probes that would fail on a
# hidden row, the online store, and errors.
assert rows(c, "SELECT count(*) AS n, max(cnt) AS m FROM airlines.carrier_delays") == [{"n": 4, "m": 50}]
assert rows(c, "SELECT count(*) AS n FROM airlines.carrier_delays WHERE 1 / (cnt - 777) > -1000") == [{"n": 4}]
assert rows(c, f"SELECT count(*) AS n FROM airlines.carrier_delays WHERE contact = '{MASKED}'") == [{"n": 0}]
online = rows(c, "SELECT carrier, delay_rate FROM online.airlines.carrier_delays WHERE carrier IN ('AF', 'LH') "
                 "ORDER BY carrier")
clean(online, "the online store")
assert {r["carrier"] for r in online} <= {"LH"}, online
for sql in [
    "SELECT CAST(region AS INT) FROM airlines.carrier_delays",
    "SELECT * FROM airlines.carrier_delays WHERE carrier = 'AF' AND CAST(contact AS INT) = 1",
]:
    try:
        clean(rows(c, sql), sql)
    except adbc_driver_manager.Error as e:
        clean(str(e), sql)
refused(c, 'SELECT * FROM airlines."carrier_delays$files"', "dana", "metadata tables")

# The admin reads the story in the audit log.
events = rows(a, "SELECT user_name, action, object, detail, allowed FROM system.audit_log ORDER BY event_time")
actions = [(e["user_name"], e["action"]) for e in events]
for expected in [("pat", "sharing"), ("dana", "sharing"), ("dana", "denied"), ("dana", "read"), ("pat", "write")]:
    assert expected in actions, (expected, actions)
reads = [e for e in events if e["user_name"] == "dana" and e["action"] == "read"]
assert all(e["detail"].startswith("snapshot ") for e in reads), reads
# ... which the consumer reads only her part of.
own = rows(c, "SELECT DISTINCT user_name FROM system.audit_log")
assert own == [{"user_name": "dana"}], own

for cur in (c, p, a):
    cur.close()
for conn in (consumer, producer, admin):
    conn.close()
print("OK")
