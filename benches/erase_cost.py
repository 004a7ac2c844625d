"""What one GDPR erasure costs: ERASE of one entity from a feature group of
many snapshots, through `pitlake sql`, the way a user runs it.

The group is built once (kept in --warehouse): the rows of --source (a
Parquet file with columns k, ts, f1..f4, as benches/asof_peers.py generates)
are loaded in --snapshots slices, one COPY each, so every snapshot holds a
slice of time with most entities in it, as daily ingests do. Each run then
erases one more key (the next one found in the first slice) and prints one
table row: its rows before, the ERASE's wall time, and what the audit log
says it did.

    python3 benches/erase_cost.py --pitlake-bin target/release/pitlake \
        --source ~/.cache/pitlake-bench-data/64x50000000-1000000-time/features.parquet \
        --warehouse ~/.cache/pitlake-bench-data/erase/warehouse --snapshots 100 --runs 1
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq


def sql(binary, warehouse, text):
    done = subprocess.run(
        [binary, "sql", "--warehouse", warehouse, "--format", "csv", "-c", text],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"pitlake sql failed: {text}\n{done.stderr}")
    return done.stdout.strip().splitlines()


def load(binary, warehouse, source, snapshots):
    parquet = pq.ParquetFile(source)
    rows = parquet.metadata.num_rows
    per = -(-rows // snapshots)
    sql(binary, warehouse,
        "CREATE FEATURE GROUP fg (k BIGINT NOT NULL, ts TIMESTAMP NOT NULL, "
        "f1 DOUBLE, f2 DOUBLE, f3 DOUBLE, f4 DOUBLE) ENTITY KEY (k) EVENT TIME ts")
    with tempfile.TemporaryDirectory() as tmp:
        for i, batch in enumerate(parquet.iter_batches(batch_size=per)):
            path = os.path.join(tmp, f"slice-{i}.parquet")
            pq.write_table(pa.Table.from_batches([batch]), path)
            sql(binary, warehouse, f"COPY fg FROM '{path}'")
            os.remove(path)
            print(f"loaded snapshot {i + 1}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pitlake-bin", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--snapshots", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    binary, warehouse = args.pitlake_bin, args.warehouse
    if not os.path.exists(os.path.join(warehouse, "catalog.db")):
        load(binary, warehouse, args.source, args.snapshots)

    first = sql(binary, warehouse,
                'SELECT snapshot_id FROM "fg$snapshots" ORDER BY sequence_number LIMIT 1')[1]
    print("| rows | snapshots | data files | key's rows (all snapshots) | ERASE wall | rows erased | audit |")
    print("|---|---|---|---|---|---|---|")
    for _ in range(args.runs):
        total, snapshots, files = sql(binary, warehouse,
            'SELECT (SELECT count(*) FROM fg) AS r, (SELECT count(*) FROM "fg$snapshots") AS s, '
            '(SELECT count(*) FROM "fg$files") AS f')[1].split(",")
        key = sql(binary, warehouse,
                  f"SELECT k FROM fg FOR VERSION AS OF {first} ORDER BY k LIMIT 1")[1]
        before = sql(binary, warehouse, f"SELECT count(*) FROM fg WHERE k = {key}")[1]
        started = time.perf_counter()
        erased = sql(binary, warehouse, f"ERASE FROM fg WHERE k = {key}")[1]
        wall = time.perf_counter() - started
        left = sql(binary, warehouse,
                   f"SELECT count(*) FROM fg FOR VERSION AS OF {first} WHERE k = {key}")[1]
        if left != "0":
            sys.exit(f"key {key} still in snapshot {first}: {left} rows")
        audit = sql(binary, warehouse,
                    "SELECT detail FROM system.audit_log WHERE action = 'erase' "
                    "ORDER BY event_time DESC LIMIT 1")[1]
        detail = audit.split(": ", 1)[-1].split(" (")[0] + "; " + audit.rsplit("; ", 1)[-1]
        print(f"| {total} | {snapshots} | {files} | {before} (current) | {wall:.2f} s | {erased} | {detail.strip(chr(34))} |")


if __name__ == "__main__":
    main()
