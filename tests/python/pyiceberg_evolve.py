"""Changes the columns of a pitlake table with pyiceberg, committing no
snapshot. Mode `evolve` (the default): adds `note`, renames `score` to
`points`, widens `n` to a long. Mode `replace`: drops `s` and adds `s2`.
Prints the new schema id."""
import sys

from pyiceberg.types import LongType, StringType

from warehouse_catalog import open_catalog

warehouse, table_name = sys.argv[1:3]
mode = sys.argv[3] if len(sys.argv) > 3 else "evolve"
catalog = open_catalog(warehouse)
table = catalog.load_table(table_name)
with table.update_schema() as update:
    if mode == "replace":
        update.delete_column("s")
        update.add_column("s2", StringType())
    else:
        update.add_column("note", StringType())
        update.rename_column("score", "points")
        update.update_column("n", LongType())
print(catalog.load_table(table_name).schema().schema_id)
