"""Reads every snapshot of a pitlake table with pyiceberg and writes each scan
to <out_dir>/<snapshot_id>.parquet, so the Rust test can compare it with
pitlake's FOR VERSION AS OF. Prints the snapshot ids, one per line."""
import sys

import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog

warehouse, table_name, out_dir = sys.argv[1:4]
catalog = SqlCatalog(
    "pitlake",
    uri=f"sqlite:///{warehouse}/catalog.db",
    warehouse=f"file://{warehouse}",
)
table = catalog.load_table(table_name)
for snapshot in table.snapshots():
    data = table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()
    pq.write_table(data, f"{out_dir}/{snapshot.snapshot_id}.parquet")
    print(snapshot.snapshot_id)
