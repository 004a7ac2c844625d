"""Streams records into a group through `pitlake serve` (a commit per
record, compaction every 5 commits) while two other processes run `pitlake
sql` SELECTs on the same warehouse in a loop. Prints the final count and
every reader error. A reader's catalog header check used to open and close
catalog.db, dropping the SQLite locks of its process: another process then
rolled back a write under way, and the table was left naming a deleted
metadata file."""
import json, subprocess, sys, time, socket, os, threading
import pyarrow as pa, pyarrow.flight as flight
binary, wh = sys.argv[1], sys.argv[2]
subprocess.run([binary, "sql", "--warehouse", wh, "-c", "CREATE SCHEMA s; CREATE FEATURE GROUP s.g (k BIGINT NOT NULL, t TIMESTAMP NOT NULL, v BIGINT) ENTITY KEY (k) EVENT TIME t ONLINE"], check=True, capture_output=True)
with socket.socket() as so:
    so.bind(("127.0.0.1", 0)); port = so.getsockname()[1]
server = subprocess.Popen([binary, "serve", "--warehouse", wh, "--listen", f"127.0.0.1:{port}", "--user", "u:pw", "--commit-rows", "1", "--commit-interval-ms", "1", "--compact-every", "5"], stdout=subprocess.DEVNULL, stderr=open(wh + ".server.log", "w"))
stop = False
errors = []
def reader():
    while not stop:
        r = subprocess.run([binary, "sql", "--warehouse", wh, "-c", "SELECT count(*) FROM s.g"], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(r.stderr.strip()[-300:])
        time.sleep(0.1)
threads = [threading.Thread(target=reader) for _ in range(2)]
for t in threads: t.start()
try:
    client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
    for a in range(100):
        try:
            h = client.authenticate_basic_token("u", "pw"); break
        except flight.FlightError:
            time.sleep(0.2); client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
    opts = flight.FlightCallOptions(headers=[h])
    schema = pa.schema([("k", pa.int64()), ("t", pa.timestamp("us")), ("v", pa.int64())])
    w, acks = client.do_put(flight.FlightDescriptor.for_path("stream", "s.g"), schema, opts)
    for i in range(int(sys.argv[3])):
        w.write_batch(pa.record_batch([pa.array([i % 50]), pa.array([0], pa.timestamp("us")), pa.array([i])], schema=schema))
        json.loads(acks.read().to_pybytes())
    w.done_writing(); w.close()
finally:
    stop = True
    for t in threads: t.join()
    server.terminate(); server.wait(timeout=60)
r = subprocess.run([binary, "sql", "--warehouse", wh, "--format", "csv", "-c", "SELECT count(*) AS n FROM s.g"], capture_output=True, text=True)
print("final:", r.stdout.strip().splitlines()[-1] if r.returncode == 0 else r.stderr[-300:])
print("reader errors:", len(errors))
print("\n".join(errors[:5]))
