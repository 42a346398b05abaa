"""Celery app shared by the interop tests of vhg-worker.

The same task names are implemented in Go by the test worker
(cmd/vhg-worker/interop_test.go), so that a Python worker and a Go worker can
consume one queue side by side. Configuration comes from the environment:

  CELERY_BROKER_URL      broker URL (default amqp://guest:guest@127.0.0.1:5672//)
  CELERY_RESULT_BACKEND  result backend URL (default redis://127.0.0.1:6379/0)
  INTEROP_QUEUE          queue every task goes to (default celery)
  INTEROP_PROTOCOL       task message protocol, 1 or 2 (default 2)
  INTEROP_QUEUE_TYPE     classic (default) or quorum: the queue is declared
                         with queue_arguments {'x-queue-type': 'quorum'}, as
                         a deployment on RabbitMQ 4 declares it
  INTEROP_EXCHANGE_TYPE  direct (default) or topic: the type of the exchange
                         named after the queue
"""
import os
import time

from celery import Celery
from kombu import Exchange, Queue

app = Celery(
    "interop",
    broker=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
)
QUEUE = os.environ.get("INTEROP_QUEUE", "celery")
QUEUE_TYPE = os.environ.get("INTEROP_QUEUE_TYPE", "classic")
EXCHANGE_TYPE = os.environ.get("INTEROP_EXCHANGE_TYPE", "direct")

app.conf.update(
    task_default_queue=QUEUE,
    task_protocol=int(os.environ.get("INTEROP_PROTOCOL", "2")),
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
if QUEUE_TYPE != "classic" or EXCHANGE_TYPE != "direct":
    app.conf.task_queues = [Queue(
        QUEUE, Exchange(QUEUE, type=EXCHANGE_TYPE), routing_key=QUEUE,
        queue_arguments={"x-queue-type": QUEUE_TYPE} if QUEUE_TYPE != "classic" else None,
    )]
if QUEUE_TYPE == "quorum":
    # Celery 5.2 sets the prefetch count channel-wide (global QoS) on
    # RabbitMQ, which RabbitMQ refuses on a quorum queue; Celery 5.5+ sees
    # the quorum queue (worker_detect_quorum_queues) and sets it per
    # consumer. Do as 5.5 does.
    from kombu.transport import pyamqp
    pyamqp.Transport.qos_semantics_matches_spec = lambda self, connection: True


@app.task(name="interop.add")
def add(*args):
    return sum(args)


@app.task(name="interop.tsum")
def tsum(values):
    return sum(values)


@app.task(name="interop.fail")
def fail(*args):
    raise ValueError("boom")


@app.task(name="interop.whoami", bind=True)
def whoami(self, *args):
    return self.request.hostname


@app.task(name="interop.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(name="interop.retry_once", bind=True)
def retry_once(self):
    if self.request.retries == 0:
        raise self.retry(countdown=1, exc=RuntimeError("first try"))
    return "retried %d" % self.request.retries
