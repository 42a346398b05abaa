"""Client scenarios run by the interop tests against a Go worker.

Usage: python3 scenarios.py NAME. Each scenario prints one JSON document on
stdout; the Go test compares it with what Python Celery would produce.
Run with /usr/bin/python3 (Debian's python3-celery 5.2.6).
"""
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

from celery import chain, chord, group, signature
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.utils import uuid

from interop import app

TIMEOUT = 30


def sig(name, *args, **kwargs):
    return app.signature(name, args=args, kwargs=kwargs)


def outcome(fn):
    """Runs fn and describes its result or the exception it raised."""
    try:
        return {"result": fn()}
    except CeleryTimeout:
        return {"timeout": True}
    except Exception as exc:  # noqa: BLE001 - the exception is the result
        return {
            "exc_type": type(exc).__name__,
            "exc_module": type(exc).__module__,
            "exc_args": [repr(a) if not isinstance(a, (str, int, float)) else a for a in exc.args],
        }


def accumulate():
    r = app.send_task("celery.accumulate", args=[1, 2, 3])
    r2 = app.send_task("celery.accumulate", args=[1, 2, 3], kwargs={"index": 1})
    return {"all": outcome(lambda: r.get(timeout=TIMEOUT)), "index": outcome(lambda: r2.get(timeout=TIMEOUT))}


def add():
    r = app.send_task("interop.add", args=[2, 3])
    return outcome(lambda: r.get(timeout=TIMEOUT))


def failure():
    r = app.send_task("interop.fail", args=[1])
    out = outcome(lambda: r.get(timeout=TIMEOUT))
    out["state"] = r.state
    out["traceback_present"] = bool(r.traceback)
    return out


def retry():
    r = app.send_task("interop.retry_once")
    seen = []
    out = outcome(lambda: r.get(timeout=TIMEOUT, on_message=lambda m: seen.append(m["status"])))
    out["states"] = seen
    return out


def countdown():
    start = time.monotonic()
    r = app.send_task("interop.add", args=[1, 1], countdown=2)
    out = outcome(lambda: r.get(timeout=TIMEOUT))
    out["elapsed"] = time.monotonic() - start
    return out


def expired():
    # The ETA lies after the expiry: the worker holds the message until the
    # ETA, then finds it expired and stores REVOKED.
    r = app.send_task("interop.add", args=[1, 1], countdown=2, expires=1)
    out = outcome(lambda: r.get(timeout=TIMEOUT))
    out["state"] = r.state
    return out


def unknown():
    r = app.send_task("interop.no_such_task", args=[1])
    return outcome(lambda: r.get(timeout=TIMEOUT))


def canvas():
    return {
        "chain": outcome(lambda: chain(sig("interop.add", 1, 2), sig("interop.add", 10), sig("interop.add", 100)).apply_async().get(timeout=TIMEOUT)),
        "group": outcome(lambda: group(sig("interop.add", 1, 1), sig("interop.add", 2, 2)).apply_async().get(timeout=TIMEOUT)),
        "chord": outcome(lambda: chord([sig("interop.add", i, i) for i in range(10)], sig("interop.tsum")).apply_async().get(timeout=TIMEOUT)),
        "chain_with_chord": outcome(lambda: chain(
            sig("interop.add", 1, 1),
            group(sig("interop.add", 1), sig("interop.add", 2)),
            sig("interop.tsum"),
            sig("interop.add", 10),
        ).apply_async().get(timeout=TIMEOUT)),
        "immutable": outcome(lambda: chain(sig("interop.add", 1, 2), app.signature("interop.add", args=(5, 5), immutable=True)).apply_async().get(timeout=TIMEOUT)),
        "empty_chord": outcome(lambda: chord([], sig("interop.tsum")).apply_async().get(timeout=TIMEOUT)),
        "chord_failure": chord_failure(),
        "workflow_shape": outcome(lambda: workflow_shape().apply_async().get(timeout=TIMEOUT)),
    }


def workflow_shape():
    """The VHG workflow's canvas with stand-in tasks: a chain into a chord of
    per-rendition chains, whose body is itself a chain."""
    renditions = [(10, 100), (20, 200)]
    return chain(
        sig("interop.add", 1, 1), sig("interop.add", 1), sig("interop.add", 1),
        chord([chain(sig("interop.add", h), sig("interop.add", b), sig("interop.add", 0), sig("interop.add", 0), sig("interop.add", 0))
               for h, b in renditions],
              chain(sig("interop.tsum"), sig("interop.add", 1000), sig("interop.add", 0))),
    )


def chord_failure():
    c = chord([sig("interop.add", 1, 1), sig("interop.fail")], sig("interop.tsum")).apply_async()
    out = outcome(lambda: c.get(timeout=TIMEOUT))
    # The client re-raises the header's error; the body itself holds the
    # ChordError the worker stored.
    body = app.AsyncResult(c.id)
    deadline = time.monotonic() + TIMEOUT
    while body.state == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.05)
    out["body_state"] = body.state
    out["body_exc_type"] = type(body.result).__name__
    return out


def links():
    callback = sig("interop.add", 100)
    r = sig("interop.add", 1, 2).apply_async(link=callback)
    first = r.get(timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while not r.children and time.monotonic() < deadline:
        time.sleep(0.05)
        r = app.AsyncResult(r.id)
        r.get(timeout=TIMEOUT)
    child = outcome(lambda: r.children[0].get(timeout=TIMEOUT)) if r.children else {"missing": True}

    errback = app.signature("celery.accumulate", args=("errback",)).set(task_id=uuid())
    failing = sig("interop.fail").apply_async(link_error=errback)
    failed = outcome(lambda: failing.get(timeout=TIMEOUT))
    errback_result = outcome(lambda: app.AsyncResult(errback.id).get(timeout=TIMEOUT))
    return {"first": first, "callback": child, "failed": failed,
            "errback": errback_result, "failed_id": failing.id}


def protocol1():
    app.conf.task_protocol = 1
    r = app.send_task("interop.add", args=[20, 22])
    c = chain(sig("interop.add", 1, 2), sig("interop.add", 3)).apply_async()
    return {"send_task": outcome(lambda: r.get(timeout=TIMEOUT)), "chain": outcome(lambda: c.get(timeout=TIMEOUT))}


def mixed():
    """Many small chords over a queue that a Python and a Go worker share."""
    results = []
    for n in range(5):
        c = chord([sig("interop.add", i, n) for i in range(10)], sig("interop.tsum")).apply_async()
        results.append(c.get(timeout=TIMEOUT))
    who = group(sig("interop.whoami", i) for i in range(40)).apply_async().get(timeout=TIMEOUT)
    return {"chords": results, "workers": sorted(set(who))}


def encode():
    """Triggers the VHG workflow as the platform's Python clients do."""
    r = app.send_task("adaptation.commons.encode_workflow", args=[os.environ["INTEROP_INPUT"]])
    out = {"id": r.id}
    if os.environ.get("INTEROP_WAIT") == "1":
        out.update(outcome(lambda: r.get(timeout=TIMEOUT)))
    return out


SCENARIOS = {f.__name__: f for f in [accumulate, add, failure, retry, countdown, expired, unknown, canvas, links, protocol1, mixed, encode]}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](), sort_keys=True))
