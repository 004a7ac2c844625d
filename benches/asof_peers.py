"""ASOF JOIN peer comparison: pitlake vs DuckDB vs Polars on the same Parquet files.

    python3 benches/asof_peers.py [--sizes S,S-clustered,probe-1,probe-64,probe-4096,chain,M] [--threads 2] [--runs 1]

Creates a venv with the pinned peers (benches/requirements.txt) on first use,
builds pitlake's bench binary in release mode, generates the data, runs each
engine in its own process (so peak RSS is its own), checks that all agree on
(rows, matched rows, sum of a feature), and prints times, peak RSS and ratios.
With --runs N the engines take turns N times and each reports its median time
and peak (a shared VM's speed drifts within minutes, so only interleaved runs
compare).
"""
import argparse
import json
import os
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
    "M": (5_000_000, 50_000_000, 1_000_000, 1, "time"),
    "probe-1": (1, 50_000_000, 1_000_000, 1, "time"),
    "probe-64": (64, 50_000_000, 1_000_000, 1, "time"),
    "probe-4096": (4096, 50_000_000, 1_000_000, 1, "time"),
    "chain": (1_000_000, 10_000_000, 100_000, 4, "time"),
}


def ensure_venv():
    python = VENV / "bin" / "python"
    marker = VENV / ".complete"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r",
                        str(ROOT / "benches" / "requirements.txt")], check=True)
        marker.write_text("")
    return python


def generate(python, out, labels, features, keys, order, shared=None):
    """Writes features.parquet and labels.parquet into `out`. With `shared`, a
    directory holding the same features, links them and draws only labels."""
    if shared is not None:
        (out / "features.parquet").symlink_to(shared / "features.parquet")
    script = f"""
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
rng = np.random.default_rng(42)
span = 10**12
if {shared is not None}:
    rng = np.random.default_rng(43)
    lk = rng.integers(0, {keys}, {labels}, dtype=np.int64)
    lts = rng.integers(0, span, {labels}, dtype=np.int64)
    pq.write_table(pa.table({{"k": lk, "ts": pa.array(lts, pa.timestamp("us")), "label": rng.integers(0, 2, {labels})}}),
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
f1 = rng.integers(0, 1000, len(k)).astype(np.float64)
pq.write_table(pa.table({{"k": k, "ts": pa.array(ts, pa.timestamp("us")), "f1": f1,
    "f2": rng.random(len(k)), "f3": rng.random(len(k)), "f4": rng.random(len(k))}}),
    "{out}/features.parquet", row_group_size=1_000_000)
lk = rng.integers(0, {keys}, {labels}, dtype=np.int64)
lts = rng.integers(0, span, {labels}, dtype=np.int64)
pq.write_table(pa.table({{"k": lk, "ts": pa.array(lts, pa.timestamp("us")), "label": rng.integers(0, 2, {labels})}}),
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


def median(runs):
    """One engine's runs: the median time and peak, the checksum of every run
    (they must all agree)."""
    result = dict(runs[0])
    result["secs"] = statistics.median(r["secs"] for r in runs)
    result["peak_rss_mb"] = round(statistics.median(r["peak_rss_mb"] for r in runs))
    if len({(r["rows"], r["matched"], round(r["sum"], 3)) for r in runs}) > 1:
        result["sum"] = float("nan")
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="S,S-clustered,probe-1,probe-64,probe-4096,chain,M")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--data", default=str(Path.home() / ".cache" / "pitlake-bench-data"))
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    python = ensure_venv()
    # The join needs no TLS; without it the release build shares its
    # dependencies with `cargo bench --no-default-features`.
    subprocess.run(
        ["cargo", "bench", "--bench", "asof_peers", "--no-default-features", "--no-run", "--quiet"],
        cwd=ROOT,
        check=True,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = max((target / "release" / "deps").glob("asof_peers-*"), key=lambda p: p.stat().st_mtime)
    env = dict(os.environ, POLARS_MAX_THREADS=args.threads)
    rows = []
    for size in args.sizes.split(","):
        labels, features, keys, joins, order = SIZES[size]
        data = Path(args.data) / f"{labels}x{features}-{keys}-{order}"
        if not (data / "labels.parquet").exists():
            data.mkdir(parents=True, exist_ok=True)
            # Sizes with the same feature rows share one file.
            shared = next((d for d in Path(args.data).glob(f"*x{features}-{keys}-{order}")
                           if d != data and (d / "features.parquet").exists()), None)
            print(f"generating {size} in {data} ...", flush=True)
            generate(python, data, labels, features, keys, order, shared)
        files = [str(data / "labels.parquet"), str(data / "features.parquet"), str(joins), args.threads]
        commands = [
            ([str(binary), *files], None),
            ([str(python), "-c", DUCKDB, *files], env),
            ([str(python), "-c", POLARS, *files], env),
        ]
        turns = [[run(cmd, e) for cmd, e in commands] for _ in range(max(args.runs, 1))]
        results = [median(list(runs)) for runs in zip(*turns)]
        check = {(r["rows"], r["matched"], round(r["sum"], 3)) for r in results}
        agree = "yes" if len(check) == 1 else f"NO: {results}"
        best = min(results[1:], key=lambda r: r["secs"])
        best_mem = min(r["peak_rss_mb"] for r in results[1:])
        ours = results[0]
        rows.append((size, results, agree, ours["secs"] / best["secs"], ours["peak_rss_mb"] / best_mem))
        print(f"{size}: " + ", ".join(f"{r['engine']} {r['secs']}s {r['peak_rss_mb']}MB" for r in results)
              + f"; agree: {agree}", flush=True)
    print("\n| size | pitlake s | duckdb s | polars s | pitlake MB | duckdb MB | polars MB | time / best peer | RSS / best peer | agree |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, r, agree, tr, mr in rows:
        print(f"| {size} | {r[0]['secs']} | {r[1]['secs']} | {r[2]['secs']} | {r[0]['peak_rss_mb']} | "
              f"{r[1]['peak_rss_mb']} | {r[2]['peak_rss_mb']} | {tr:.2f} | {mr:.2f} | {agree} |")


if __name__ == "__main__":
    main()
