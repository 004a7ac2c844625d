"""Reads every snapshot of a pitlake table with pyiceberg and with DuckDB's
iceberg extension, and writes each scan to <out_dir>/<snapshot_id>.parquet
(pyiceberg) and <out_dir>/<snapshot_id>.duckdb.parquet (DuckDB), so the
Rust test can compare both with pitlake's FOR VERSION AS OF. Prints the
namespace's tables, then the snapshot ids, one per line."""
import sys

import duckdb
import pyarrow.parquet as pq
from duckdb_extensions import import_extension

from warehouse_catalog import open_catalog

warehouse, table_name, out_dir = sys.argv[1:4]
catalog = open_catalog(warehouse)
namespace = table_name.split(".")[0]
print("tables:", sorted(name for _, name in catalog.list_tables(namespace)))
table = catalog.load_table(table_name)
con = duckdb.connect()
import_extension("avro", con=con)
import_extension("iceberg", con=con)
metadata = table.metadata_location.replace("'", "''")
for snapshot in table.snapshots():
    data = table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()
    pq.write_table(data, f"{out_dir}/{snapshot.snapshot_id}.parquet")
    theirs = con.sql(
        f"SELECT * FROM iceberg_scan('{metadata}', snapshot_from_id => {snapshot.snapshot_id})"
    ).to_arrow_table()
    pq.write_table(theirs, f"{out_dir}/{snapshot.snapshot_id}.duckdb.parquet")
    print(snapshot.snapshot_id)
