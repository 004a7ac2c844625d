"""Creates py.part with pyiceberg, partitioned by identity(a), with two
appends."""
import sys

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType

from warehouse_catalog import open_catalog

warehouse = sys.argv[1]
catalog = open_catalog(warehouse)
catalog.create_namespace_if_not_exists("py")
schema = Schema(
    NestedField(1, "a", LongType(), required=False),
    NestedField(2, "b", StringType(), required=False),
)
spec = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=IdentityTransform(), name="a"))
table = catalog.create_table("py.part", schema=schema, partition_spec=spec)
for a in (1, 2):
    table.append(pa.table({"a": pa.array([a, a], pa.int64()), "b": ["x", "y"]}))
