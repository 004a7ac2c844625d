"""DuckDB as the oracle for pitlake's ASOF JOIN (tests/it/asof_oracle.rs).

    python asof_oracle.py <out_dir> <seed> <cases>

Writes, per case N, labels_N.parquet and features_N.parquet (random keys of
several types with skew, NULL keys and times, keys on one side only, empty
sides), and cases.json: per case the column types, the operator, the maximum
age, the query for pitlake and DuckDB's answer (label id -> feature id).

Feature rows are unique on (keys, match value), so the answer is unique:
DuckDB picks any of tied rows. DuckDB has no maximum age; the oracle takes
its ASOF match and drops it when older than the bound, which is the
semantics pitlake documents (no fall-back to an older row). DuckDB matches
labels whose time is NULL, and NULL keys with NULL keys; the oracle drops those
matches (in pitlake, as in SQL, NULL never matches).
"""
import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

KEY_TYPES = ["BIGINT", "INT", "VARCHAR", "DATE"]
MATCH_TYPES = ["TIMESTAMP", "TIMESTAMPTZ", "DATE", "BIGINT", "DOUBLE"]
OPS = [">=", ">", "<=", "<"]
ARROW = {
    "BIGINT": pa.int64(),
    "INT": pa.int32(),
    "VARCHAR": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "DOUBLE": pa.float64(),
}
# Match values span about 200 units of each type (days, seconds, ...), from
# before 1970 to after it, so ties between labels and features are common.
UNIT = {"TIMESTAMP": 86_400_000_000, "TIMESTAMPTZ": 3_600_000_000, "DATE": 1, "BIGINT": 1, "DOUBLE": 0.5}
AGE = {"TIMESTAMP": ("INTERVAL '7 days'", 7 * 86_400_000_000), "TIMESTAMPTZ": ("INTERVAL '5 hours'", 5 * 3_600_000_000),
       "DATE": ("INTERVAL '6 days'", 6), "BIGINT": ("9", 9), "DOUBLE": ("3.25", 3.25)}


def keys_of(rng, kind, n, distinct, null_rate):
    raw = (rng.random(n) ** 2 * distinct).astype(np.int64)  # skewed to small keys
    nulls = rng.random(n) < null_rate
    if kind == "VARCHAR":
        values = [None if z else f"key-{v}" for v, z in zip(raw, nulls)]
    elif kind == "DATE":
        values = [None if z else int(v) - 100 for v, z in zip(raw, nulls)]
    else:
        values = [None if z else int(v) - 3 for v, z in zip(raw, nulls)]
    return pa.array(values, type=ARROW[kind])


def times_of(rng, kind, values, null_rate):
    nulls = rng.random(len(values)) < null_rate
    if kind == "DOUBLE":
        return pa.array([None if z else float(v) * UNIT[kind] for v, z in zip(values, nulls)], pa.float64())
    if kind == "DATE":
        return pa.array([None if z else int(v) for v, z in zip(values, nulls)], pa.int32()).cast(pa.date32())
    ints = pa.array([None if z else int(v) * UNIT[kind] for v, z in zip(values, nulls)], pa.int64())
    return ints.cast(ARROW[kind])


def case(rng, n, out):
    nkeys = int(rng.integers(0, 3))
    key_types = [KEY_TYPES[int(rng.integers(0, len(KEY_TYPES)))] for _ in range(nkeys)]
    match_type = MATCH_TYPES[n % len(MATCH_TYPES)]
    op = OPS[(n // len(MATCH_TYPES)) % 4]
    with_age = bool(rng.random() < 0.5)
    nl = 0 if n % 11 == 3 else int(rng.integers(1, 2500))
    nf = 0 if n % 13 == 5 else int(rng.integers(1, 5000))
    distinct = int(rng.integers(1, 60))
    # The features may not hold NULL keys or times when they are a feature group.
    feature_group = n % 3 == 0 and match_type in ("TIMESTAMP", "TIMESTAMPTZ", "DATE")
    f_nulls = 0.0 if feature_group else 0.04

    labels = {"id": pa.array(np.arange(nl, dtype=np.int64))}
    features = {"fid": pa.array(np.arange(nf, dtype=np.int64) + 1_000_000)}
    for i, kind in enumerate(key_types):
        # Features see more distinct keys: some keys exist on one side only.
        labels[f"k{i}"] = keys_of(rng, kind, nl, distinct, 0.05)
        features[f"k{i}"] = keys_of(rng, kind, nf, distinct + 5, f_nulls)
    labels["t"] = times_of(rng, match_type, rng.integers(-100, 100, nl), 0.04)
    # Unique on (keys, time): draw times, then drop repeats of (keys, time).
    ft = rng.integers(-110, 110, nf)
    features["t"] = times_of(rng, match_type, ft, f_nulls)
    features["v"] = pa.array(rng.random(nf))
    ftable = pa.table(features)
    cols = [f"k{i}" for i in range(nkeys)] + ["t"]
    seen, keep = set(), []
    rows = list(zip(*[ftable.column(c).to_pylist() for c in cols])) if nf else []
    for i, row in enumerate(rows):
        if row not in seen:
            seen.add(row)
            keep.append(i)
    ftable = ftable.take(pa.array(keep, type=pa.int64())) if nf else ftable
    ltable = pa.table(labels)
    lpath, fpath = out / f"labels_{n}.parquet", out / f"features_{n}.parquet"
    pq.write_table(ltable, lpath, row_group_size=int(rng.integers(1, 1000)))
    pq.write_table(ftable, fpath, row_group_size=int(rng.integers(1, 2000)))

    on = [f"l.k{i} = f.k{i}" for i in range(nkeys)]
    age_sql, _ = AGE[match_type]
    backward = op in (">=", ">")
    bound = f"f.t >= l.t - {age_sql}" if backward else f"f.t <= l.t + {age_sql}"
    pitlake_on = on + ([bound] if with_age else [])
    pitlake = f"SELECT l.id, f.fid FROM labels_{n} l ASOF JOIN features_{n} f MATCH_CONDITION (l.t {op} f.t)"
    if pitlake_on:
        pitlake += " ON " + " AND ".join(pitlake_on)

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 2")
    con.execute(f"CREATE TABLE l AS SELECT * FROM read_parquet('{lpath}')")
    con.execute(f"CREATE TABLE f AS SELECT * FROM read_parquet('{fpath}')")
    duck_on = " AND ".join(on + [f"l.t {op} f.t"])
    # DuckDB 1.5.5 matches a label whose time is NULL (NULL sorts after every
    # time) with its key's latest row, and NULL keys with NULL keys; pitlake's
    # rule is that NULL never matches.
    valid = " AND ".join([f"l.k{i} IS NOT NULL" for i in range(nkeys)] + ["l.t IS NOT NULL"]
                         + ([bound] if with_age else []))
    fid = f"CASE WHEN {valid} THEN f.fid END"
    answer = con.execute(f"SELECT l.id, {fid} FROM l ASOF LEFT JOIN f ON {duck_on}").fetchall()
    assert len(answer) == nl, (n, len(answer), nl)

    def ddl(name, table):
        types = {"id": "BIGINT", "fid": "BIGINT", "v": "DOUBLE", "t": match_type}
        types.update({f"k{i}": kind for i, kind in enumerate(key_types)})
        columns = ", ".join(
            f"{c} {types[c]}" + (" NOT NULL" if feature_group and name.startswith("features") and c != "v" else "")
            for c in table.column_names
        )
        if feature_group and name.startswith("features"):
            keys = ", ".join(f"k{i}" for i in range(nkeys)) or None
            if keys is None:
                return f"CREATE TABLE {name} ({columns})"
            return f"CREATE FEATURE GROUP {name} ({columns}) ENTITY KEY ({keys}) EVENT TIME t"
        return f"CREATE TABLE {name} ({columns})"

    return {
        "case": n,
        "about": f"keys {key_types}, match {match_type} {op}, age {with_age}, feature group {feature_group and nkeys > 0}, "
                 f"{nl} labels, {ftable.num_rows} features",
        "setup": [
            ddl(f"labels_{n}", ltable), f"COPY labels_{n} FROM '{lpath}'",
            ddl(f"features_{n}", ftable), f"COPY features_{n} FROM '{fpath}'",
        ],
        "query": pitlake,
        "answer": {str(i): f for i, f in answer},
    }


def main():
    out, seed, cases = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    spec = [case(rng, n, out) for n in range(cases)]
    (out / "cases.json").write_text(json.dumps(spec))


if __name__ == "__main__":
    main()
