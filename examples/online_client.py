"""The online store from Python with nothing but pyarrow.flight: stream feature
records into an ONLINE feature group, each acknowledged once it is durable,
then look up the latest values of some entities.

    python examples/online_client.py HOST:PORT USER PASSWORD [SCHEMA.GROUP]

against `pitlake serve --user USER:PASSWORD`, with the group created first:

    CREATE SCHEMA shop;
    CREATE FEATURE GROUP shop.user_features (
        user_id BIGINT, event_time TIMESTAMP, clicks_1h BIGINT, spend_1h DOUBLE
    ) ENTITY KEY (user_id) EVENT TIME event_time ONLINE;
"""
import json
import sys
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.flight as flight


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    user = sys.argv[2] if len(sys.argv) > 2 else "pitlake"
    password = sys.argv[3] if len(sys.argv) > 3 else ""
    group = sys.argv[4] if len(sys.argv) > 4 else "shop.user_features"

    client = flight.FlightClient(f"grpc://{address}")
    # Basic credentials buy a bearer token; every later call carries it.
    token = client.authenticate_basic_token(user, password)
    options = flight.FlightCallOptions(headers=[token])

    # Streaming ingest (PutRecord): DoPut on the path ["stream", "schema.group"].
    # Columns are matched by name and converted like INSERT.
    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("event_time", pa.timestamp("us")),
            ("clicks_1h", pa.int64()),
            ("spend_1h", pa.float64()),
        ]
    )
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # TIMESTAMP is UTC
    batches = [
        {"user_id": [1, 2, 3], "event_time": [now] * 3, "clicks_1h": [5, 0, 12], "spend_1h": [19.5, 0.0, 250.0]},
        # A newer value for user 1 replaces the one above online.
        {"user_id": [1], "event_time": [now + timedelta(seconds=1)], "clicks_1h": [6], "spend_1h": [24.0]},
    ]
    descriptor = flight.FlightDescriptor.for_path("stream", group)
    writer, acks = client.do_put(descriptor, schema, options)
    for columns in batches:
        writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=schema))
        # One acknowledgement per batch, sent once the batch is in the
        # write-ahead log (fsync'd): {"lsn": log position, "rows": rows}.
        ack = json.loads(acks.read().to_pybytes())
        print(f"acknowledged {ack['rows']} row(s) at log position {ack['lsn']}")
    writer.done_writing()
    writer.close()

    # Online lookup: the latest row of each entity, in request order, NULLs
    # for an entity without a value (user 4). Composite keys: [[a, b], ...].
    request = {"group": group, "keys": [1, 2, 3, 4], "columns": ["clicks_1h", "spend_1h"]}
    action = flight.Action("lookup", json.dumps(request).encode())
    [result] = list(client.do_action(action, options))
    table = pa.ipc.open_stream(result.body).read_all()
    print(f"lookup of {request['keys']} in {group}:")
    print(table.to_pandas().to_string(index=False))


if __name__ == "__main__":
    main()
