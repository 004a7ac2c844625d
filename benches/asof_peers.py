"""ASOF JOIN peer comparison: pitlake vs DuckDB vs Polars on the same data.

    python3 benches/asof_peers.py [--sizes S,S-clustered,S-random,S-string,S-int,S-uuid,probe-1,probe-64,probe-4096,chain,M]
                                  [--paths warehouse,parquet] [--threads 2] [--runs 1]
                                  [--codecs zstd,zstd-3,lz4,snappy,none]

Creates a venv with the pinned peers (benches/requirements.txt) on first use,
builds pitlake in release mode, generates the data as Parquet files, runs each
engine in its own process (so peak RSS is its own), checks that all agree on
(rows, matched rows, sum of a feature), and prints times, peak RSS and ratios.
DuckDB and Polars read the Parquet files. pitlake is measured on two paths:

- `warehouse`, the path users take: the files loaded into a pitlake warehouse
  with `COPY` (labels as a table, features as feature groups, one per join of
  the chain), the query run by the `pitlake` binary (`pitlake sql -c`, process
  start to exit) and, through Flight SQL, the training set (labels and their
  features) read into a pyarrow table with the ADBC driver from
  `pitlake serve`. The decode floor is a plain aggregate over the feature
  group's columns the join reads, through `pitlake sql`.
- `parquet`: the bench binary (benches/asof_peers.rs) joining the Parquet
  files registered as they are: DataFusion and AsOfJoinExec alone.

With --runs N the engines take turns N times and each reports its median time
and peak (a shared VM's speed drifts within minutes, so only interleaved runs
compare). --codecs loads the S-type sizes into one warehouse per Parquet codec
(`write.parquet.compression-codec`, set with pyiceberg) and prints size, load,
scan and ASOF time per codec instead.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("PITLAKE_BENCH_VENV", Path.home() / ".cache" / "pitlake-bench-venv"))

SIZES = {
    # name: (labels, feature rows, keys, joins, feature order)
    "S": (1_000_000, 10_000_000, 100_000, 1, "time"),
    "S-clustered": (1_000_000, 10_000_000, 100_000, 1, "key"),
    "S-random": (1_000_000, 10_000_000, 100_000, 1, "random"),
    "M": (5_000_000, 50_000_000, 1_000_000, 1, "time"),
    "probe-1": (1, 50_000_000, 1_000_000, 1, "time"),
    "probe-64": (64, 50_000_000, 1_000_000, 1, "time"),
    "probe-4096": (4096, 50_000_000, 1_000_000, 1, "time"),
    "chain": (1_000_000, 10_000_000, 100_000, 4, "time"),
    "S-string": (1_000_000, 10_000_000, 100_000, 1, "time"),
    "S-int": (1_000_000, 10_000_000, 100_000, 1, "time"),
    "S-uuid": (1_000_000, 10_000_000, 100_000, 1, "time"),
}
# Sizes whose entity keys are not BIGINT: strings ('user_<n>', VARCHAR),
# INT (Iceberg's `int`), or UUIDs as text (36 characters, VARCHAR).
KEY_KINDS = {"S-string": "string", "S-int": "int", "S-uuid": "uuid"}


def key_type(size):
    return {"string": "VARCHAR", "uuid": "VARCHAR", "int": "INT"}.get(KEY_KINDS.get(size), "BIGINT")


def ensure_venv():
    python = VENV / "bin" / "python"
    marker = VENV / ".complete"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r",
                        str(ROOT / "benches" / "requirements.txt")], check=True)
        marker.write_text("")
    return python


def generate(python, out, labels, features, keys, order, shared=None, kind=None):
    """Writes features.parquet and labels.parquet into `out`. With `shared`, a
    directory holding the same features, links them and draws only labels.
    By `kind`, key n is written as the string 'user_n' ("string"), as a
    32-bit integer ("int"), or as a UUID's text made from n ("uuid")."""
    if shared is not None:
        (out / "features.parquet").symlink_to(shared / "features.parquet")
    script = f"""
import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
def key(a):
    if "{kind}" == "string":
        return pc.binary_join_element_wise("user_", pc.cast(pa.array(a), pa.string()), "")
    if "{kind}" == "int":
        return pa.array(a.astype(np.int32))
    if "{kind}" == "uuid":
        high = np.char.mod("%08x", a)
        low = np.char.mod("%012x", (a * 2654435761) % 2**48)
        return pa.array(np.char.add(np.char.add(high, "-7d3c-4b2a-9e1f-"), low))
    return a
rng = np.random.default_rng(42)
span = 10**12
if {shared is not None}:
    rng = np.random.default_rng(43)
    lk = rng.integers(0, {keys}, {labels}, dtype=np.int64)
    lts = rng.integers(0, span, {labels}, dtype=np.int64)
    pq.write_table(pa.table({{"k": key(lk), "ts": pa.array(lts, pa.timestamp("us")), "label": rng.integers(0, 2, {labels})}}),
        "{out}/labels.parquet", row_group_size=1_000_000)
    raise SystemExit(0)
k = rng.integers(0, {keys}, {features}, dtype=np.int64)
ts = rng.integers(0, span, {features}, dtype=np.int64)
# Unique (k, ts) on the right: ties would let engines pick different rows.
order = np.lexsort((ts, k))
k, ts = k[order], ts[order]
keep = np.ones(len(k), dtype=bool)
keep[1:] = (k[1:] != k[:-1]) | (ts[1:] != ts[:-1])
k, ts = k[keep], ts[keep]
if "{order}" == "time":
    o = np.argsort(ts, kind="stable"); k, ts = k[o], ts[o]
elif "{order}" == "random":
    o = rng.permutation(len(k)); k, ts = k[o], ts[o]
f1 = rng.integers(0, 1000, len(k)).astype(np.float64)
pq.write_table(pa.table({{"k": key(k), "ts": pa.array(ts, pa.timestamp("us")), "f1": f1,
    "f2": rng.random(len(k)), "f3": rng.random(len(k)), "f4": rng.random(len(k))}}),
    "{out}/features.parquet", row_group_size=1_000_000)
lk = rng.integers(0, {keys}, {labels}, dtype=np.int64)
lts = rng.integers(0, span, {labels}, dtype=np.int64)
pq.write_table(pa.table({{"k": key(lk), "ts": pa.array(lts, pa.timestamp("us")), "label": rng.integers(0, 2, {labels})}}),
    "{out}/labels.parquet", row_group_size=1_000_000)
"""
    subprocess.run([str(python), "-c", script], check=True)


DUCKDB = """
import duckdb, json, sys, time
labels, features, joins, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
con = duckdb.connect()
con.execute(f"SET threads={threads}")
total = " + ".join(f"f{j}.f1" for j in range(joins))
sql = f"SELECT count(*), count(f0.f1), sum({total}) FROM read_parquet('{labels}') l"
for j in range(joins):
    sql += f" ASOF LEFT JOIN read_parquet('{features}') f{j} ON l.k = f{j}.k AND l.ts >= f{j}.ts"
start = time.perf_counter()
n, matched, s = con.execute(sql).fetchone()
print(json.dumps({"engine": "duckdb", "secs": round(time.perf_counter() - start, 3), "rows": n, "matched": matched, "sum": float(s or 0)}))
"""

POLARS = """
import json, sys, time
import polars as pl
labels, features, joins = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
l = pl.read_parquet(labels).sort("ts")
f = pl.read_parquet(features).select("k", "ts", "f1").sort("ts")
out = l
for j in range(joins):
    out = out.join_asof(f.rename({"f1": f"f1_{j}"}), on="ts", by="k", strategy="backward")
total = sum(pl.col(f"f1_{j}") for j in range(joins))
r = out.select(pl.len().alias("n"), pl.col("f1_0").count().alias("m"), total.sum().alias("s")).row(0)
print(json.dumps({"engine": "polars", "secs": round(time.perf_counter() - start, 3), "rows": r[0], "matched": r[1], "sum": float(r[2] or 0)}))
"""


# The ADBC Flight SQL driver reads the training set into a pyarrow table; the
# checksum is computed on it after the clock stops.
FLIGHT = """
import json, sys, time
import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.compute as pc
uri, sql, joins = sys.argv[1], sys.argv[2], int(sys.argv[3])
with flight_sql.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
    start = time.perf_counter()
    cur.execute(sql)
    table = cur.fetch_arrow_table()
    secs = time.perf_counter() - start
total = table["f1_0"]
for j in range(1, joins):
    total = pc.add(total, table[f"f1_{j}"])
s = pc.sum(total).as_py()
print(json.dumps({"engine": "flight", "secs": round(secs, 3), "rows": table.num_rows,
                  "matched": table.num_rows - table["f1_0"].null_count, "sum": float(s or 0)}))
"""

# The same training set through `pitlake sql --format arrow` into a file, timed
# from process start to exit; the checksum is read from the file afterwards.
SQL_ARROW = """
import json, subprocess, sys, tempfile, time
import pyarrow as pa, pyarrow.compute as pc
pitlake, warehouse, sql, joins = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with tempfile.TemporaryFile() as out:
    start = time.perf_counter()
    proc = subprocess.Popen([pitlake, "sql", "--warehouse", warehouse, "--format", "arrow", "-c", sql],
                            stdout=out, stderr=subprocess.PIPE)
    status = proc.wait()
    secs = time.perf_counter() - start
    if status != 0:
        sys.exit(proc.stderr.read().decode())
    out.seek(0)
    table = pa.ipc.open_stream(out).read_all()
total = table["f1_0"]
for j in range(1, joins):
    total = pc.add(total, table[f"f1_{j}"])
s = pc.sum(total).as_py()
print(json.dumps({"engine": "sql-arrow", "secs": round(secs, 3), "rows": table.num_rows,
                  "matched": table.num_rows - table["f1_0"].null_count, "sum": float(s or 0)}))
"""

# Sets a table property of a pitlake warehouse with pyiceberg (the catalog is
# the Iceberg SQL catalog named `pitlake`).
SET_PROPERTY = """
import sys
from pyiceberg.catalog.sql import SqlCatalog
warehouse, table, key, value = sys.argv[1:5]
catalog = SqlCatalog("pitlake", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}")
with catalog.load_table(table).transaction() as tx:
    tx.set_properties({key: value})
"""


def group_names(joins):
    """The feature groups a size joins: sizes with the same feature rows share
    a warehouse, so the chain's first group is S's."""
    return ["features"] + [f"features_{j}" for j in range(1, joins)]


def label_table(size):
    """Sizes with the same feature rows differ in their number of labels (S and
    the chain share both files)."""
    return f"labels_{SIZES[size][0]}"


def checksum_sql(labels, groups):
    """The query every engine answers: rows, matched rows, a sum of features."""
    total = " + ".join(f"f{j}.f1" for j in range(len(groups)))
    sql = f"SELECT count(*) AS n, count(f0.f1) AS matched, sum({total}) AS total FROM {labels} l"
    for j, group in enumerate(groups):
        sql += f" ASOF JOIN {group} f{j} MATCH_CONDITION (l.ts >= f{j}.ts) ON l.k = f{j}.k"
    return sql


def training_set_sql(labels, groups):
    """The labels with their features: what a training set is."""
    columns = ", ".join(f"f{j}.f1 AS f1_{j}, f{j}.f2 AS f2_{j}" for j in range(len(groups)))
    sql = f"SELECT l.k, l.ts, l.label, {columns} FROM {labels} l"
    for j, group in enumerate(groups):
        sql += f" ASOF JOIN {group} f{j} MATCH_CONDITION (l.ts >= f{j}.ts) ON l.k = f{j}.k"
    return sql


def pitlake_sql(pitlake, warehouse, sql):
    return subprocess.run([str(pitlake), "sql", "--warehouse", str(warehouse), "-c", sql],
                          check=True, capture_output=True, text=True).stdout


def load_warehouse(python, pitlake, size, data, codec=None):
    """The size's Parquet files loaded into a warehouse with `COPY`: its labels
    as a table, the features as feature groups. The warehouse sits beside the
    feature file (sizes with the same feature rows share it), each table is
    loaded once. Returns the warehouse, the labels' table, the groups and the
    seconds the COPYs took (None when nothing was left to load)."""
    joins = SIZES[size][3]
    features = (data / "features.parquet").resolve()
    warehouse = features.parent / ("warehouse" if codec is None else f"warehouse-{codec}")
    warehouse.mkdir(parents=True, exist_ok=True)
    labels, groups, k = label_table(size), group_names(joins), key_type(size)
    tables = [(labels, f"CREATE TABLE {{}} (k {k}, ts TIMESTAMP, label BIGINT)", data / "labels.parquet")]
    tables += [(group, f"CREATE FEATURE GROUP {{}} (k {k}, ts TIMESTAMP, f1 DOUBLE, f2 DOUBLE, "
                "f3 DOUBLE, f4 DOUBLE) ENTITY KEY (k) EVENT TIME ts", features) for group in groups]
    secs = None
    for table, create, source in tables:
        marker = warehouse / f".loaded-{table}"
        if marker.exists():
            continue
        # A fresh folder is no warehouse yet: `pitlake sql` makes one only
        # for a statement that creates something.
        if (warehouse / "catalog.db").exists():
            pitlake_sql(pitlake, warehouse, f"DROP TABLE IF EXISTS {table}")
        pitlake_sql(pitlake, warehouse, create.format(table))
        if codec is not None:
            name, _, level = codec.partition("-")
            for key, value in [("write.parquet.compression-codec", name),
                               ("write.parquet.compression-level", level)]:
                if value:
                    subprocess.run([str(python), "-c", SET_PROPERTY, str(warehouse),
                                    f"default.{table}", key, value], check=True)
        start = time.perf_counter()
        pitlake_sql(pitlake, warehouse, f"COPY {table} FROM '{source}'")
        secs = (secs or 0) + time.perf_counter() - start
        marker.write_text("")
    return warehouse, labels, groups, secs


def data_bytes(warehouse, table):
    return sum(f.stat().st_size for f in (warehouse / "default" / table / "data").rglob("*.parquet"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`pitlake serve --insecure-no-auth` on a free port of loopback."""

    def __init__(self, pitlake, warehouse):
        port = free_port()
        self.uri = f"grpc://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [str(pitlake), "serve", "--warehouse", str(warehouse), "--listen", f"127.0.0.1:{port}",
             "--insecure-no-auth"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"pitlake serve failed:\n{self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("pitlake serve did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def run(cmd, env=None):
    """Runs one engine; returns its JSON line plus its own peak RSS."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{err}")
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    result = json.loads(line)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024)
    return result


def run_pitlake_sql(pitlake, warehouse, sql, engine="pitlake"):
    """`pitlake sql -c` timed from process start to exit, with its peak RSS and
    the one row it printed (as JSON) as the checksum."""
    cmd = [str(pitlake), "sql", "--warehouse", str(warehouse), "--format", "json", "-c", sql]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise SystemExit(f"pitlake sql failed:\n{err}")
    row = json.loads(out)[0]
    values = list(row.values())
    return {"engine": engine, "secs": round(secs, 3), "rows": values[0],
            "matched": values[1] if len(values) > 1 else 0,
            "sum": float(values[2] or 0) if len(values) > 2 else 0.0,
            "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def median(runs):
    """One engine's runs: the median time and peak, the checksum of every run
    (they must all agree)."""
    result = dict(runs[0])
    result["secs"] = statistics.median(r["secs"] for r in runs)
    result["peak_rss_mb"] = round(statistics.median(r["peak_rss_mb"] for r in runs))
    if len({(r["rows"], r["matched"], round(r["sum"], 3)) for r in runs}) > 1:
        result["sum"] = float("nan")
    return result


def build(args):
    """Builds what the paths need; returns (pitlake binary, bench binary).
    --pitlake-bin and --bench-bin take binaries built before instead (to
    compare two commits run for run)."""
    if args.pitlake_bin or args.bench_bin:
        return (Path(args.pitlake_bin).resolve() if args.pitlake_bin else None,
                Path(args.bench_bin).resolve() if args.bench_bin else None)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    pitlake = bench = None
    if "warehouse" in args.paths or args.codecs:
        subprocess.run(["cargo", "build", "--release", "--bin", "pitlake", "--quiet"], cwd=ROOT, check=True)
        pitlake = target / "release" / "pitlake"
    if "parquet" in args.paths and not args.codecs:
        # With the default features, as the pitlake binary: one release build
        # of the library serves both.
        subprocess.run(
            ["cargo", "bench", "--bench", "asof_peers", "--no-run", "--quiet"],
            cwd=ROOT,
            check=True,
        )
        bench = max((target / "release" / "deps").glob("asof_peers-*"), key=lambda p: p.stat().st_mtime)
    return pitlake, bench


def data_dir(args, python, size):
    labels, features, keys, joins, order = SIZES[size]
    kind = KEY_KINDS.get(size)
    suffix = f"-{kind}" if kind else ""
    data = Path(args.data) / f"{labels}x{features}-{keys}-{order}{suffix}"
    if not (data / "labels.parquet").exists():
        data.mkdir(parents=True, exist_ok=True)
        # Sizes with the same feature rows share one file.
        shared = next((d for d in Path(args.data).glob(f"*x{features}-{keys}-{order}{suffix}")
                       if d != data and (d / "features.parquet").exists()), None)
        print(f"generating {size} in {data} ...", flush=True)
        generate(python, data, labels, features, keys, order, shared, kind)
    return data


def compare_codecs(args, python, pitlake):
    """Per codec: the features' bytes on disk, the COPYs' time, the decode
    floor and the ASOF JOIN through `pitlake sql` (medians of --runs)."""
    rows = []
    for size in args.sizes.split(","):
        data = data_dir(args, python, size)
        for codec in args.codecs.split(","):
            warehouse, labels, groups, load = load_warehouse(python, pitlake, size, data, codec)
            floor_sql = f"SELECT count(*) AS n, max(k) AS mk, sum(f1) AS s, max(ts) AS t FROM {groups[0]}"
            asof_sql = checksum_sql(labels, groups)
            turns = [[run_pitlake_sql(pitlake, warehouse, floor_sql, "floor"),
                      run_pitlake_sql(pitlake, warehouse, asof_sql)] for _ in range(max(args.runs, 1))]
            floor, asof = [median(list(r)) for r in zip(*turns)]
            mb = data_bytes(warehouse, groups[0]) / 1e6
            rows.append((size, codec, mb, load, floor, asof))
            print(f"{size} {codec}: {mb:.0f} MB, load {load}, floor {floor['secs']}s, "
                  f"asof {asof['secs']}s {asof['peak_rss_mb']}MB, checksum {asof['rows'], asof['matched'], asof['sum']}",
                  flush=True)
    print("\n| size | codec | features MB | COPY s (all tables) | floor s | ASOF s | ASOF MB | checksum |")
    print("|---|---|---|---|---|---|---|---|")
    for size, codec, mb, load, floor, asof in rows:
        load = "-" if load is None else f"{load:.1f}"
        print(f"| {size} | {codec} | {mb:.0f} | {load} | {floor['secs']} | {asof['secs']} | "
              f"{asof['peak_rss_mb']} | {asof['rows']}, {asof['matched']}, {round(asof['sum'], 3)} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="S,S-clustered,S-random,S-string,S-int,S-uuid,probe-1,probe-64,probe-4096,chain,M")
    parser.add_argument("--paths", default="warehouse,parquet")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--data", default=str(Path.home() / ".cache" / "pitlake-bench-data"))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--codecs", default="")
    parser.add_argument("--pitlake-bin", default="")
    parser.add_argument("--bench-bin", default="")
    args = parser.parse_args()
    python = ensure_venv()
    pitlake, bench = build(args)
    if args.codecs:
        return compare_codecs(args, python, pitlake)
    env = dict(os.environ, POLARS_MAX_THREADS=args.threads)
    rows = []
    for size in args.sizes.split(","):
        labels, features, keys, joins, order = SIZES[size]
        data = data_dir(args, python, size)
        files = [str(data / "labels.parquet"), str(data / "features.parquet"), str(joins), args.threads]
        peers = [
            ([str(python), "-c", DUCKDB, *files], env),
            ([str(python), "-c", POLARS, *files], env),
        ]
        # Each turn: pitlake's runs, then the peers'.
        ours = []
        if "warehouse" in args.paths:
            warehouse, labels, groups, load = load_warehouse(python, pitlake, size, data)
            if load is not None:
                print(f"{size}: loaded into the warehouse in {load:.1f} s", flush=True)
            # The decode floor reads what the join reads of the feature group.
            floor_sql = f"SELECT count(*) AS n, max(k) AS mk, sum(f1) AS s, max(ts) AS t FROM {groups[0]}"
            asof_sql = checksum_sql(labels, groups)
            server = Server(pitlake, warehouse)
            training = training_set_sql(labels, groups)
            flight = [str(python), "-c", FLIGHT, server.uri, training, str(joins)]
            sql_arrow = [str(python), "-c", SQL_ARROW, str(pitlake), str(warehouse), training, str(joins)]
            ours.append(("warehouse", [
                lambda: run_pitlake_sql(pitlake, warehouse, asof_sql),
                lambda: run_pitlake_sql(pitlake, warehouse, floor_sql, "floor"),
                lambda: run(flight),
                lambda: run(sql_arrow),
            ]))
        if "parquet" in args.paths:
            ours.append(("parquet", [lambda: run([str(bench), *files])]))
        try:
            turns = []
            for _ in range(max(args.runs, 1)):
                turn = {path: [f() for f in fs] for path, fs in ours}
                turn["peers"] = [run(cmd, e) for cmd, e in peers]
                turns.append(turn)
        finally:
            if "warehouse" in args.paths:
                server.stop()
        med = lambda path, i: median([t[path][i] for t in turns])
        peer_results = [median([t["peers"][i] for t in turns]) for i in range(2)]
        best = min(peer_results, key=lambda r: r["secs"])
        best_mem = min(r["peak_rss_mb"] for r in peer_results)
        for path, fs in ours:
            mine = med(path, 0)
            floor = med(path, 1) if path == "warehouse" else None
            flight = med(path, 2) if path == "warehouse" else None
            sql_arrow = med(path, 3) if path == "warehouse" else None
            checks = [mine, *peer_results] + ([flight, sql_arrow] if flight else [])
            check = {(r["rows"], r["matched"], round(r["sum"], 3)) for r in checks}
            agree = "yes" if len(check) == 1 else f"NO: {[(r['engine'], r['rows'], r['matched'], r['sum']) for r in checks]}"
            rows.append((size, path, mine, peer_results, floor, flight, sql_arrow, agree,
                         mine["secs"] / best["secs"], mine["peak_rss_mb"] / best_mem))
            print(f"{size} {path}: pitlake {mine['secs']}s {mine['peak_rss_mb']}MB"
                  + (f", floor {floor['secs']}s, flight {flight['secs']}s, "
                     f"training set via sql {sql_arrow['secs']}s" if floor else "")
                  + ", " + ", ".join(f"{r['engine']} {r['secs']}s {r['peak_rss_mb']}MB" for r in peer_results)
                  + f"; agree: {agree}", flush=True)
    print("\n| size | pitlake path | pitlake s | duckdb s | polars s | pitlake MB | duckdb MB | polars MB "
          "| time / best peer | RSS / best peer | floor s | ASOF / floor | Flight to pyarrow s "
          "| training set via sql s | Flight / sql | Flight / checksum | agree |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, path, mine, peers, floor, flight, sql_arrow, agree, tr, mr in rows:
        extra = (f"{floor['secs']} | {mine['secs'] / floor['secs']:.2f} | {flight['secs']} | "
                 f"{sql_arrow['secs']} | {flight['secs'] / sql_arrow['secs']:.2f} | "
                 f"{flight['secs'] / mine['secs']:.2f}") if floor else "- | - | - | - | - | -"
        print(f"| {size} | {path} | {mine['secs']} | {peers[0]['secs']} | {peers[1]['secs']} | "
              f"{mine['peak_rss_mb']} | {peers[0]['peak_rss_mb']} | {peers[1]['peak_rss_mb']} | "
              f"{tr:.2f} | {mr:.2f} | {extra} | {agree} |")


if __name__ == "__main__":
    main()
