"""Python clients of `make bench` (cmd/vhg-worker/bench_*_test.go).

Usage: python3 bench.py chain N | workflow URL. Each prints one JSON
document on stdout; times are measured here, between sending and the end,
so Python's start-up is not in them. Configuration as for interop.py
(CELERY_BROKER_URL, CELERY_RESULT_BACKEND, INTEROP_QUEUE).

  chain N       a chain of N immutable celery.accumulate steps, applied as a
                platform client applies a canvas; seconds from apply_async
                until the last step's result is in the backend.
  workflow URL  adaptation.commons.encode_workflow(URL), sent as the
                platform's clients send it; seconds from sending until
                COMPLETE arrives on the status queue named after the task
                id (declared and consumed before sending, as the Java
                consumer would), and every status seen.
"""
import json
import sys
import time

from celery import chain
from celery.utils import uuid
from kombu import Consumer, Exchange, Queue

from interop import app

TIMEOUT = 600


def chain_hops(n):
    steps = chain(app.signature("celery.accumulate", args=(i,), immutable=True) for i in range(n))
    start = time.monotonic()
    result = steps.apply_async()
    result.get(timeout=TIMEOUT)
    return {"seconds": time.monotonic() - start, "steps": n}


def workflow(url):
    root = uuid()
    name = root.replace("-", "")
    # What notify declares (Celery 3.x/4.x's amqp backend): the same
    # arguments, or the declaration fails.
    queue = Queue(name, Exchange("celeryresults", type="direct", durable=True), routing_key=name,
                  durable=True, auto_delete=True, queue_arguments={"x-expires": 86400000})
    statuses = []
    final = {}

    def on_message(body, message):
        if isinstance(body, (bytes, str)):
            body = json.loads(body)
        statuses.append(body.get("status"))
        if body.get("status") in ("COMPLETE", "FAILURE"):
            final.update(body)
        message.ack()

    with app.connection_for_write() as conn:
        with Consumer(conn, [queue], callbacks=[on_message], accept=["json"]):
            start = time.monotonic()
            app.send_task("adaptation.commons.encode_workflow", args=[url], task_id=root)
            while not final:
                left = TIMEOUT - (time.monotonic() - start)
                if left <= 0:
                    break
                conn.drain_events(timeout=left)
            seconds = time.monotonic() - start
    return {"seconds": seconds, "id": root, "statuses": statuses,
            "status": final.get("status"), "result": final.get("result")}


if __name__ == "__main__":
    if sys.argv[1] == "chain":
        out = chain_hops(int(sys.argv[2]))
    elif sys.argv[1] == "workflow":
        out = workflow(sys.argv[2])
    else:
        sys.exit("usage: bench.py chain N | workflow URL")
    print(json.dumps(out, sort_keys=True))
