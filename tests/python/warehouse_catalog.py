"""The pyiceberg catalog of a pitlake warehouse: the SQLite catalog pitlake
keeps in `<warehouse>/catalog.db`, its files under the warehouse."""
from pyiceberg.catalog.sql import SqlCatalog


def open_catalog(warehouse):
    return SqlCatalog(
        "pitlake",
        uri=f"sqlite:///{warehouse}/catalog.db",
        warehouse=f"file://{warehouse}",
    )
