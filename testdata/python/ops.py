"""Operator-side checks run by the ops tests of vhg-worker (cmd/vhg-worker/ops_test.go).

Usage (with /usr/bin/python3, Debian's python3-celery 5.2.6, cwd testdata/python):

  ops.py result TASK_ID           wait for a task's outcome as a client sees it
  ops.py ping PATTERN MATCHER     inspect().ping() with a node pattern (glob or pcre)
  ops.py events NODE              receive events while a task runs on NODE

Each prints one JSON document on stdout. The environment is interop.py's.
"""
import json
import socket
import sys

from celery.events.state import State
from celery.exceptions import TaskRevokedError

from interop import app

TIMEOUT = 30


def result(task_id):
    r = app.AsyncResult(task_id)
    try:
        return {"state": r.state, "result": r.get(timeout=TIMEOUT)}
    except TaskRevokedError as exc:
        return {"state": r.state, "exc_type": type(exc).__name__, "exc_args": list(exc.args)}
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome
        return {"state": r.state, "exc_type": type(exc).__name__, "exc_args": [repr(a) for a in exc.args]}


def ping(pattern, matcher):
    replies = app.control.inspect(timeout=4, pattern=pattern, matcher=matcher).ping() or {}
    return {"nodes": sorted(replies)}


def events(node):
    """Listens on celeryev like Flower does, sends interop.add(2, 2) once the
    receiver's queue exists, and stops when the worker came online, sent a
    periodic heartbeat and ran the task; then reports what celery's own
    event state machine made of it."""
    state = State()
    seen = []
    sent = {}

    def on_event(event):
        state.event(event)
        if event.get("hostname") != node:
            return
        seen.append({k: event.get(k) for k in ("type", "uuid", "clock", "result", "sw_ident", "freq")})
        types = [e["type"] for e in seen]
        task_done = any(e["type"] == "task-succeeded" and e["uuid"] == sent.get("id") for e in seen)
        if "worker-online" in types and types.count("worker-heartbeat") >= 1 and task_done:
            receiver.should_stop = True

    class Receiver(app.events.Receiver):
        def on_consume_ready(self, connection, channel, consumers, **kwargs):
            super().on_consume_ready(connection, channel, consumers, **kwargs)
            sent["id"] = app.send_task("interop.add", args=[2, 2]).id
            print("ready", file=sys.stderr, flush=True)

    with app.connection_for_read() as conn:
        receiver = Receiver(conn, handlers={"*": on_event})
        try:
            receiver.capture(limit=None, timeout=TIMEOUT, wakeup=False)
        except socket.timeout:
            pass
    worker = state.workers.get(node)
    task = state.tasks.get(sent.get("id"))
    return {
        "task_id": sent.get("id"),
        "events": seen,
        "worker_alive": bool(worker and worker.alive),
        "worker_sw_ident": worker and worker.sw_ident,
        "task_state": task and task.state,
        "task_result": task and task.result,
        "task_name": task and task.name,
        "task_args": task and task.args,
    }


def main():
    name, args = sys.argv[1], sys.argv[2:]
    out = {"result": result, "ping": ping, "events": events}[name](*args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
