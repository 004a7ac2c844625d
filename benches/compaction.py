"""What many small commits cost a feature group, and what compaction gives
back, on the paths users take.

batch:  --commits INSERT statements of --rows rows each into a feature group,
        run by one `pitlake sql -f` (each INSERT is one commit); then
        `CALL system.rewrite_data_files`.
stream: `pitlake serve --commit-rows 1` and one Flight DoPut stream of
        --stream-records single-record batches into an ONLINE group, each awaited
        (each acknowledgement is fsync'd; the committer commits whatever
        waits), once with --compact-every 0 and once with the default.

Each prints data files, manifests of the current snapshot, snapshots, and the
wall time of two queries through `pitlake sql` (a full aggregate and an ASOF
JOIN of 1,000 labels; median of 3, process start included), before and after.

    python3 benches/compaction.py --pitlake-bin target/release/pitlake --commits 10000
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.flight as flight
from pyiceberg.catalog.sql import SqlCatalog

QUERIES = {
    "aggregate": "SELECT count(*), sum(f1) FROM bench.fg",
    "asof_1k": (
        "SELECT count(f.f1) FROM bench.labels l ASOF JOIN bench.fg f "
        "MATCH_CONDITION (l.ts >= f.ts) ON l.k = f.k"
    ),
}


def sql(binary, warehouse, text=None, file=None):
    args = [binary, "sql", "--warehouse", warehouse, "--format", "csv"]
    args += ["-f", file] if file else ["-c", text]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"pitlake sql failed: {text or file}\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()


def shape(binary, warehouse):
    catalog = SqlCatalog(
        "pitlake", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}"
    )
    table = catalog.load_table("bench.fg")
    manifests = len(table.current_snapshot().manifests(table.io))
    files = sql(binary, warehouse, 'SELECT count(*) FROM bench."fg$files"')[-1]
    snapshots = sql(binary, warehouse, 'SELECT count(*) FROM bench."fg$snapshots"')[-1]
    times = {}
    for name, query in QUERIES.items():
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            sql(binary, warehouse, query)
            runs.append(time.perf_counter() - start)
        times[name] = statistics.median(runs)
    return {"files": int(files), "manifests": manifests, "snapshots": int(snapshots), **times}


def row(label, s):
    print(
        f"| {label} | {s['snapshots']} | {s['files']} | {s['manifests']} | "
        f"{s['aggregate']:.2f} | {s['asof_1k']:.2f} |",
        flush=True,
    )


def create(binary, warehouse, online):
    sql(binary, warehouse,
        "CREATE SCHEMA bench; CREATE FEATURE GROUP bench.fg (k BIGINT NOT NULL, "
        "ts TIMESTAMP NOT NULL, f1 DOUBLE, f2 DOUBLE) ENTITY KEY (k) EVENT TIME ts"
        + (" ONLINE" if online else "")
        + "; CREATE TABLE bench.labels (k BIGINT, ts TIMESTAMP); INSERT INTO bench.labels "
        "SELECT value % 1000, TIMESTAMP '2025-01-02' FROM generate_series(0, 999)")


def batch_path(binary, commits, rows, tmp):
    warehouse = os.path.join(tmp, "batch")
    create(binary, warehouse, online=False)
    script = os.path.join(tmp, "inserts.sql")
    with open(script, "w") as out:
        for c in range(commits):
            values = ", ".join(
                f"({(c * rows + r) % 1000}, TIMESTAMP '2025-01-01' + INTERVAL '{c} seconds', "
                f"{c}.5, {r}.25)"
                for r in range(rows)
            )
            out.write(f"INSERT INTO bench.fg VALUES {values};\n")
    start = time.perf_counter()
    sql(binary, warehouse, file=script)
    print(f"batch: {commits} INSERT commits in {time.perf_counter() - start:.0f} s", flush=True)
    row("batch, before", shape(binary, warehouse))
    start = time.perf_counter()
    out = sql(binary, warehouse, "CALL system.rewrite_data_files('bench.fg')")
    print(f"batch: rewrite_data_files {out[-1]} in {time.perf_counter() - start:.1f} s", flush=True)
    row("batch, after rewrite_data_files", shape(binary, warehouse))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_path(binary, commits, tmp, compact_every):
    warehouse = os.path.join(tmp, f"stream-{compact_every}")
    create(binary, warehouse, online=True)
    port = free_port()
    server = subprocess.Popen(
        [binary, "serve", "--warehouse", warehouse, "--listen", f"127.0.0.1:{port}",
         "--user", "bench:bench-password", "--commit-rows", "1", "--commit-interval-ms", "1",
         "--compact-every", str(compact_every)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
        for attempt in range(100):
            try:
                header = client.authenticate_basic_token("bench", "bench-password")
                break
            except flight.FlightError:
                # Not listening yet.
                if attempt == 99:
                    raise
                time.sleep(0.2)
                client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
        options = flight.FlightCallOptions(headers=[header])
        schema = pa.schema([("k", pa.int64()), ("ts", pa.timestamp("us")),
                            ("f1", pa.float64()), ("f2", pa.float64())])
        writer, acks = client.do_put(
            flight.FlightDescriptor.for_path("stream", "bench.fg"), schema, options)
        start = time.perf_counter()
        base = 1735689600 * 1_000_000
        for c in range(commits):
            batch = pa.record_batch(
                [pa.array([c % 1000]), pa.array([base + c * 1_000_000], pa.timestamp("us")),
                 pa.array([c + 0.5]), pa.array([0.25])], schema=schema)
            writer.write_batch(batch)
            json.loads(acks.read().to_pybytes())
        writer.done_writing()
        writer.close()
        print(f"stream (compact every {compact_every}): {commits} records acknowledged in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    finally:
        server.terminate()
        server.wait()
    row(f"stream, compact every {compact_every or 'never'}", shape(binary, warehouse))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pitlake-bin", required=True)
    parser.add_argument("--commits", type=int, default=10000)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--stream-records", type=int, default=None,
                        help="records for the stream path (default: --commits)")
    parser.add_argument("--paths", default="batch,stream")
    parser.add_argument("--compact-every", default="0,100",
                        help="the stream path's --compact-every values, comma-separated")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="pitlake-compaction-")
    try:
        print("| path | snapshots | data files | manifests | aggregate (s) | ASOF 1k labels (s) |")
        print("|---|---|---|---|---|---|")
        if "batch" in args.paths:
            batch_path(args.pitlake_bin, args.commits, args.rows, tmp)
            shutil.rmtree(os.path.join(tmp, "batch"))
        if "stream" in args.paths:
            for every in [int(e) for e in args.compact_every.split(",")]:
                stream_path(args.pitlake_bin, args.stream_records or args.commits, tmp, every)
                shutil.rmtree(os.path.join(tmp, f"stream-{every}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
