"""Creates py.defaulted with pyiceberg: keys 0-19 at 2024-01-01, then a column
f DOUBLE with initial default 7.5 (older rows read it), then keys 0 and 1
again at 2024-06-01 with f = 1.0."""
import datetime
import sys

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, LongType, NestedField, TimestampType

from warehouse_catalog import open_catalog

warehouse = sys.argv[1]
catalog = open_catalog(warehouse)
catalog.create_namespace_if_not_exists("py")
schema = Schema(
    NestedField(1, "k", LongType(), required=False),
    NestedField(2, "t", TimestampType(), required=False),
)
table = catalog.create_table("py.defaulted", schema=schema)
first = datetime.datetime(2024, 1, 1)
table.append(pa.table({"k": pa.array(range(20), pa.int64()),
                       "t": pa.array([first] * 20, pa.timestamp("us"))}))
with table.update_schema() as update:
    update.add_column("f", DoubleType(), default_value=7.5)
table = catalog.load_table("py.defaulted")
later = datetime.datetime(2024, 6, 1)
table.append(pa.table({"k": pa.array([0, 1], pa.int64()),
                       "t": pa.array([later] * 2, pa.timestamp("us")),
                       "f": pa.array([1.0, 1.0], pa.float64())}))

# py.readded: f dropped, then added again with a default; the older file
# still holds the dropped f (1.0 and 2.0), which no query may see.
readded = catalog.create_table("py.readded", schema=Schema(
    NestedField(1, "k", LongType(), required=False),
    NestedField(2, "f", DoubleType(), required=False),
))
readded.append(pa.table({"k": pa.array([1, 2], pa.int64()), "f": pa.array([1.0, 2.0], pa.float64())}))
with readded.update_schema() as update:
    update.delete_column("f")
readded = catalog.load_table("py.readded")
with readded.update_schema() as update:
    update.add_column("f", DoubleType(), default_value=7.5)
