"""The small-query path through ADBC from Python (what notebooks and BI tools
use), against a running `pitlake serve` holding the warehouse that
`benches/small_query.rs` builds; that bench runs this script, so one command
measures both clients in the same run:

    cargo bench --bench small_query

or by hand against such a server:

    python3 benches/small_query.py --uri grpc://127.0.0.1:PORT [--runs 2000]

Runs under the bench venv (benches/requirements.txt, created on first use as
benches/asof_peers.py does). Measured, p50 / p99 of each, after a warm-up:

- empty round trip: DoAction `ping` through pyarrow.flight (ADBC has no call
  without work; the same Arrow C++ gRPC stack the ADBC driver's Go one sits
  beside, so the ratio is the one to read);
- `SELECT 1`, executed and fetched into a pyarrow table with ADBC;
- `SELECT * FROM s.g WHERE k = <literal>` (the Iceberg table);
- `SELECT * FROM online.s.g WHERE k = <literal>`;
- the prepared `SELECT * FROM online.s.g WHERE k = ?`: the same cursor
  executes the same text with a new parameter each time (the DB-API driver
  prepares it once, then binds and executes);
- the Flight `lookup` action, one key, through pyarrow.flight.
"""
import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def in_venv():
    from asof_peers import VENV, ensure_venv
    python = ensure_venv()
    if Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(python), [str(python), *sys.argv])


def percentile(sorted_ns, q):
    return sorted_ns[round((len(sorted_ns) - 1) * q)]


def timed(runs, call):
    for _ in range(max(runs // 10, 1)):
        call()
    out = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - start)
    out.sort()
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--user", default="bench")
    parser.add_argument("--password", default="bench")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    in_venv()

    import adbc_driver_flightsql.dbapi as flight_sql
    import pyarrow.flight as flight

    runs = args.runs
    rng = random.Random(42)
    key = lambda: rng.randrange(10_000)

    raw = flight.FlightClient(args.uri)
    header = raw.authenticate_basic_token(args.user, args.password)
    options = flight.FlightCallOptions(headers=[header])

    def action(kind, body=b""):
        return list(raw.do_action(flight.Action(kind, body), options))

    conn = flight_sql.connect(args.uri, db_kwargs={"username": args.user, "password": args.password},
                              autocommit=True)
    cur = conn.cursor()

    def query(sql):
        cur.execute(sql)
        table = cur.fetch_arrow_table()
        assert table.num_rows == 1, table

    prepared = conn.cursor()

    def point_lookup():
        prepared.execute("SELECT * FROM online.s.g WHERE k = ?", (key(),))
        table = prepared.fetch_arrow_table()
        assert table.num_rows == 1, table

    rows = [
        ("empty round trip (DoAction ping, pyarrow.flight)", timed(runs, lambda: action("ping"))),
        ("SELECT 1", timed(runs, lambda: query("SELECT 1"))),
        ("SELECT * FROM s.g WHERE k = <literal> (Iceberg)",
         timed(runs // 4, lambda: query(f"SELECT * FROM s.g WHERE k = {key()}"))),
        ("SELECT * FROM online.s.g WHERE k = <literal>",
         timed(runs, lambda: query(f"SELECT * FROM online.s.g WHERE k = {key()}"))),
        ("prepared SELECT * FROM online.s.g WHERE k = ? (bind + execute + fetch)",
         timed(runs, point_lookup)),
        ("Flight lookup action, 1 key (pyarrow.flight)",
         timed(runs, lambda: action("lookup", json.dumps({"group": "s.g", "keys": [key()]}).encode()))),
    ]
    cur.close()
    prepared.close()
    conn.close()

    empty50, empty99 = percentile(rows[0][1], 0.5), percentile(rows[0][1], 0.99)
    print("\nPython: ADBC Flight SQL driver (adbc_driver_flightsql), actions through pyarrow.flight:\n")
    print("| what | p50 | p99 | p50 / empty p50 | p99 / empty p99 |")
    print("|---|---|---|---|---|")
    for what, ns in rows:
        p50, p99 = percentile(ns, 0.5), percentile(ns, 0.99)
        print(f"| {what} | {p50 // 1000} µs | {p99 // 1000} µs | {p50 / empty50:.2f} | {p99 / empty99:.2f} |")


if __name__ == "__main__":
    main()
