"""Appends N one-row snapshots to a table with pyiceberg, as fast as it can,
while another writer commits to the same table. pyiceberg takes no commit
lock: it and the other writer meet only at the catalog row's compare-and-swap.
A lost swap is retried on the refreshed table. With a fourth argument, a
path, it creates `<path>.ready` once loaded and starts when `<path>` exists,
so that the writers start together. Prints the rows appended and how many
swaps were lost."""
import os
import sys
import time

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException

from warehouse_catalog import open_catalog

warehouse, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
catalog = open_catalog(warehouse)
schema = pa.schema([pa.field("writer", pa.int32()), pa.field("i", pa.int32())])
catalog.load_table(name)
if len(sys.argv) > 4:
    go = sys.argv[4]
    open(go + ".ready", "w").close()
    while not os.path.exists(go):
        time.sleep(0.005)
appended, lost = 0, 0
for i in range(count):
    while True:
        table = catalog.load_table(name)
        try:
            table.append(pa.table({"writer": [2], "i": [i]}, schema=schema))
            appended += 1
            break
        except CommitFailedException:
            lost += 1
            time.sleep(0.01)
print(appended, lost)
