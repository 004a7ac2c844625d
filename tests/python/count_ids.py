"""Reads a pitlake table with pyiceberg (committed snapshots only) and prints
one JSON object: the row count, the distinct count, min and max of an integer
column (default `id`), every value sorted, and the write-ahead-log range
(first, last LSN) of every streamed commit, in commit order.

    count_ids.py WAREHOUSE SCHEMA.TABLE [COLUMN]
"""
import json
import sys

from warehouse_catalog import open_catalog

warehouse, table_name = sys.argv[1:3]
column = sys.argv[3] if len(sys.argv) > 3 else "id"
catalog = open_catalog(warehouse)
table = catalog.load_table(table_name)
ids = sorted(table.scan(selected_fields=(column,)).to_arrow().column(column).to_pylist())
streamed = []
for snapshot in sorted(table.snapshots(), key=lambda s: s.sequence_number):
    summary = snapshot.summary
    if summary is not None and summary.get("pitlake.operation") == "stream":
        streamed.append(
            [
                int(summary["pitlake.wal.first-lsn"]),
                int(summary["pitlake.wal.last-lsn"]),
            ]
        )
print(
    json.dumps(
        {
            "count": len(ids),
            "distinct": len(set(ids)),
            "min": ids[0] if ids else None,
            "max": ids[-1] if ids else None,
            "ids": ids,
            "stream_commits": streamed,
        }
    )
)
