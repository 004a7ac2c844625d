"""Changes the columns of a pitlake table with pyiceberg, committing no
snapshot: adds `note`, renames `score` to `points`, widens `n` to a long.
Prints the new schema id."""
import sys

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.types import LongType, StringType

warehouse, table_name = sys.argv[1:3]
catalog = SqlCatalog(
    "pitlake",
    uri=f"sqlite:///{warehouse}/catalog.db",
    warehouse=f"file://{warehouse}",
)
table = catalog.load_table(table_name)
with table.update_schema() as update:
    update.add_column("note", StringType())
    update.rename_column("score", "points")
    update.update_column("n", LongType())
print(catalog.load_table(table_name).schema().schema_id)
