"""Drives `pitlake sql` in a pseudo-terminal as a person would: the banner of
a missing warehouse, two statements on one line, Ctrl-C during a query, quit;
then `--format arrow`, refused on a terminal and in the shell.

usage: shell_pty.py PITLAKE_BIN WAREHOUSE
"""

import os
import pty
import select
import sys
import time

BIN, WAREHOUSE = sys.argv[1], sys.argv[2]

pid, fd = pty.fork()
if pid == 0:
    os.execv(BIN, [BIN, "sql", "--warehouse", WAREHOUSE])

pending = b""


def expect(text, timeout=120):
    """Reads until `text` appears; returns what came before it."""
    global pending
    deadline = time.monotonic() + timeout
    needle = text.encode()
    while needle not in pending:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        if not ready:
            sys.exit(f"timed out waiting for {text!r}; the shell printed {pending!r}")
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            sys.exit(f"the shell ended while waiting for {text!r}; it printed {pending!r}")
        pending += chunk
    before, _, pending = pending.partition(needle)
    return before.decode(errors="replace")


def send(text):
    os.write(fd, text.encode())


expect("no warehouse at")
expect("pitlake> ")

send("SELECT 1;\r")
expect("error: no warehouse at")
expect("pitlake> ")

# Both statements' outcomes print, in order; the table was made.
send("CREATE TABLE t1 AS SELECT 7 AS x; SELECT nope;\r")
expect("created a new warehouse")
shown = expect("error:")
assert "count" in shown, f"the CREATE's result did not print before the error: {shown!r}"
expect("pitlake:default> ")

# Ctrl-C cancels the running query and keeps the shell.
send("SELECT count(*) FROM range(1000000000000);\r")
time.sleep(1.5)
send("\x03")
expect("cancelled")
expect("pitlake:default> ")

send("SELECT max(x) + 35 AS answer FROM t1;\r")
shown = expect("pitlake:default> ")
assert "42" in shown, f"no answer after the cancelled query: {shown!r}"

send("\\q\r")
_, status = os.waitpid(pid, 0)
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(f"the shell failed: {pending!r}")

# Binary Arrow output is refused on a terminal, before anything runs.
pending = b""
pid, fd = pty.fork()
if pid == 0:
    os.execv(BIN, [BIN, "sql", "--warehouse", WAREHOUSE, "--format", "arrow", "-c", "SELECT 1"])
expect("redirect standard output")
_, status = os.waitpid(pid, 0)
if os.waitstatus_to_exitcode(status) == 0:
    sys.exit("--format arrow on a terminal succeeded")

# And so is the shell with its output redirected: its prompts would go into
# the streams.
pending = b""
pid, fd = pty.fork()
if pid == 0:
    out = os.open(os.path.join(os.path.dirname(WAREHOUSE), "out.arrows"), os.O_WRONLY | os.O_CREAT)
    os.dup2(out, 1)
    os.execv(BIN, [BIN, "sql", "--warehouse", WAREHOUSE, "--format", "arrow"])
expect("not the interactive shell")
_, status = os.waitpid(pid, 0)
if os.waitstatus_to_exitcode(status) == 0:
    sys.exit("--format arrow in the shell succeeded")
