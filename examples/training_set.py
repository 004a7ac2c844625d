"""A data scientist's session with pitlake over Flight SQL.

Connects with the ADBC Flight SQL driver, lists the feature groups, builds a
leak-free training set with an ASOF JOIN (features as they were at each label's
time, at most 60 days old) and gets it as a pyarrow table and a pandas frame.

    pitlake serve --user alice:secret &
    python examples/training_set.py grpc://127.0.0.1:50051 alice secret
"""
import sys

import adbc_driver_flightsql.dbapi as flight_sql

uri, user, password = (sys.argv[1:4] + [None] * 3)[:3]
uri = uri or "grpc://127.0.0.1:50051"
db_kwargs = {"username": user, "password": password} if user else {}

with flight_sql.connect(uri, db_kwargs=db_kwargs, autocommit=True) as conn, conn.cursor() as cur:
    cur.execute("SHOW FEATURE GROUPS")
    for schema, group, keys, event_time, *_ in cur.fetchall():
        print(f"feature group {schema}.{group}: entity key ({keys}), event time {event_time}")

    cur.execute("""
        SELECT l.carrier, l.airport, l.ts, l.delayed,
               f.delay_rate, f.arr_flights, f.event_time AS feature_time
        FROM airlines.labels l
        ASOF JOIN airlines.airline_features f
          MATCH_CONDITION (l.ts >= f.event_time)
          ON l.carrier = f.carrier AND l.airport = f.airport
             AND f.event_time >= l.ts - INTERVAL '60 days'
        ORDER BY l.ts, l.carrier, l.airport
    """)
    training = cur.fetch_arrow_table()
    print(f"training set: {training.num_rows} rows, columns {training.column_names}")
    frame = training.to_pandas()
    print(frame.head())
    print(f"labels without features (older than 60 days or unknown): {frame['delay_rate'].isna().sum()}")
