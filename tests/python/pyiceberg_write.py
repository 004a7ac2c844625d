"""Creates py.events with pyiceberg in a pitlake warehouse: two appends, a
schema change (a new column), a third append. Prints the snapshot ids in
commit order, one per line."""
import sys
from datetime import datetime

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType, TimestampType, DoubleType

from warehouse_catalog import open_catalog

warehouse = sys.argv[1]
catalog = open_catalog(warehouse)
catalog.create_namespace_if_not_exists("py")
schema = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "name", StringType(), required=False),
    NestedField(3, "ts", TimestampType(), required=False),
)
table = catalog.create_table("py.events", schema=schema)
arrow_schema = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("ts", pa.timestamp("us")),
])
table.append(pa.table({"id": [1, 2], "name": ["a", "b"], "ts": [datetime(2024, 1, 1), datetime(2024, 1, 2)]}, schema=arrow_schema))
table.append(pa.table({"id": [3], "name": [None], "ts": [datetime(2024, 1, 3)]}, schema=arrow_schema))
with table.update_schema() as update:
    update.add_column("score", DoubleType())
table = catalog.load_table("py.events")
arrow_schema = arrow_schema.append(pa.field("score", pa.float64()))
table.append(pa.table({"id": [4], "name": ["d"], "ts": [datetime(2024, 1, 4)], "score": [0.5]}, schema=arrow_schema))
for snapshot in table.snapshots():
    print(snapshot.snapshot_id)
