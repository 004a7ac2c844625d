"""Creates py.part with pyiceberg, partitioned by identity(a), with two
appends."""
import sys

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType

warehouse = sys.argv[1]
catalog = SqlCatalog(
    "pitlake",
    uri=f"sqlite:///{warehouse}/catalog.db",
    warehouse=f"file://{warehouse}",
)
catalog.create_namespace_if_not_exists("py")
schema = Schema(
    NestedField(1, "a", LongType(), required=False),
    NestedField(2, "b", StringType(), required=False),
)
spec = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=IdentityTransform(), name="a"))
table = catalog.create_table("py.part", schema=schema, partition_spec=spec)
for a in (1, 2):
    table.append(pa.table({"a": pa.array([a, a], pa.int64()), "b": ["x", "y"]}))
