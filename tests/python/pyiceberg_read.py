"""Reads every snapshot of a pitlake table with pyiceberg and writes each scan
to <out_dir>/<snapshot_id>.parquet, so the Rust test can compare it with
pitlake's FOR VERSION AS OF. Prints the namespace's tables, then the
snapshot ids, one per line."""
import sys

import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog

warehouse, table_name, out_dir = sys.argv[1:4]
catalog = SqlCatalog(
    "pitlake",
    uri=f"sqlite:///{warehouse}/catalog.db",
    warehouse=f"file://{warehouse}",
)
namespace = table_name.split(".")[0]
print("tables:", sorted(name for _, name in catalog.list_tables(namespace)))
table = catalog.load_table(table_name)
for snapshot in table.snapshots():
    data = table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()
    pq.write_table(data, f"{out_dir}/{snapshot.snapshot_id}.parquet")
    print(snapshot.snapshot_id)
