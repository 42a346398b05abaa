#!/usr/bin/python3
"""Capture real Celery task messages and result metas as golden files.

Run with the Debian Celery 5.2.6 (kombu 5.2.4) install:

    apt-get install -y python3-celery python3-redis
    /usr/bin/python3 testdata/protocol/capture.py [OUTDIR]

OUTDIR defaults to protocol/testdata/golden next to this script's checkout.
No broker is needed: messages go through kombu's in-process ``memory://``
transport (the real Producer.publish / as_task_v2 / as_task_v1 code path),
and are read back with basic_get. Result metas come from the real backend
code: the cache+memory:// backend shares BaseKeyValueStoreBackend with the
Redis backend (_get_result_meta + encode), and rpc:// publishes over the same
memory transport.

Each message file holds {"name", "description", "properties", "headers",
"body"} where body is the raw serialized body as a string, or
"body_base64" for compressed bodies. Each result file holds {"name",
"backend", "meta"} with meta the raw JSON text the backend wrote.
"""
import base64
import json
import os
import sys
import traceback
import uuid

import celery
import kombu
from celery import Celery, chain, chord, group
from celery.app.amqp import task_message
from celery.result import AsyncResult, GroupResult
from celery.app.task import Context

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    HERE, '..', '..', 'protocol', 'testdata', 'golden')
REPLY_TO = '58893b0e-d597-3a1b-a8a1-0835da573fa2'
ORIGIN = 'gen4242@golden'


def make_app(backend='cache+memory://', **conf):
    app = Celery('golden', broker='memory://', backend=backend,
                 set_as_current=False)
    app.conf.update(task_serializer='json', accept_content=['json'],
                    result_serializer='json', **conf)
    app._local.oid = REPLY_TO  # app.thread_oid: the reply_to of every message

    @app.task(name='proj.add', typing=False)
    def add(x, y=0):
        return x + y

    @app.task(name='proj.mul', typing=False)
    def mul(x, y):
        return x * y

    @app.task(name='proj.tsum', typing=False)
    def tsum(xs):
        return sum(xs)

    @app.task(name='proj.err', typing=False)
    def err(task_id):
        return task_id

    @app.task(name='proj.retrying', bind=True, typing=False)
    def retrying(self, x):
        return x

    return app


def tid(n):
    """A fixed, readable task id."""
    return str(uuid.UUID(int=n))


def drain(app, queue='celery'):
    """Return the raw payloads kombu's memory channel holds for queue:
    {'body', 'headers', 'properties', 'content-type', 'content-encoding'},
    with the body still serialized (and compressed), base64-wrapped as on
    Redis."""
    from queue import Empty
    payloads = []
    with app.connection_for_write() as conn:
        ch = conn.default_channel
        while True:
            try:
                payloads.append(ch._get(queue))
            except Empty:
                return payloads


def write(name, data):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + '.json'), 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write('\n')


def save_messages(app, name, description, queue='celery'):
    msgs = drain(app, queue)
    assert msgs, f'{name}: nothing published'
    for i, m in enumerate(msgs):
        props = {k: m['properties'].get(k) for k in (
            'correlation_id', 'reply_to', 'delivery_mode', 'priority',
            'expiration') if m['properties'].get(k) is not None}
        props['content_type'] = m['content-type']
        props['content_encoding'] = m['content-encoding']
        assert m['properties']['body_encoding'] == 'base64'
        body = base64.b64decode(m['body'])
        data = {
            'name': name if len(msgs) == 1 else f'{name}_{i}',
            'description': description,
            'celery_version': celery.__version__,
            'kombu_version': kombu.__version__,
            'properties': props,
            'headers': m['headers'],
        }
        if m['headers'].get('compression'):
            data['body_base64'] = base64.b64encode(body).decode()
        else:
            data['body'] = body.decode('utf-8')
        write('message_' + data['name'], data)


def capture_messages():
    app = make_app()
    add, mul, tsum, err = (app.tasks[n] for n in (
        'proj.add', 'proj.mul', 'proj.tsum', 'proj.err'))
    add.apply_async((2, 2), task_id=tid(1))
    save_messages(app, 'v2_plain', 'add.apply_async((2, 2))')

    add.apply_async((2, 2), task_id=tid(2), countdown=10, expires=60,
                    priority=5, time_limit=10, soft_time_limit=5)
    save_messages(app, 'v2_options', 'countdown=10, expires=60, priority=5, '
                  'time_limit=10, soft_time_limit=5')

    add.apply_async((2, 2), task_id=tid(3), time_limit=1.5,
                    shadow='proj.add.shadowed', ignore_result=True)
    save_messages(app, 'v2_shadow', 'time_limit=1.5, shadow, ignore_result')

    add.apply_async((2, 2), task_id=tid(4), link=mul.s(10),
                    link_error=err.s())
    save_messages(app, 'link', 'link=mul.s(10), link_error=err.s()')

    chain(add.s(2, 2), add.s(4), mul.si(3, 3)).apply_async(task_id=tid(5))
    save_messages(app, 'chain', 'chain(add.s(2, 2), add.s(4), mul.si(3, 3))')

    chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
    save_messages(app, 'chord_header', 'chord([add.s(1, 1), add.s(2, 2)], '
                  'tsum.s()): the header messages')

    chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s(),
          mul.s(10)).apply_async()
    save_messages(app, 'chain_with_chord', 'chain(add.s(1, 1), group(add.s(1),'
                  ' add.s(2)), tsum.s(), mul.s(10)): first message')

    add.apply_async(task_id=tid(6), kwargs={
        'u': 1.5e-7, 'v': 1e16, 'w': 2.0, 'x': float('nan'),
        'y': float('inf'), 'z': float('-inf')})
    save_messages(app, 'nan_infinity', 'kwargs with NaN, Infinity and floats')

    add.apply_async(('héllo wörld ✓', '日本語', '😀', 'it\'s "q"',
                     'tab\tnl\n', '\x00\x7f'), task_id=tid(7))
    save_messages(app, 'unicode', 'non-ASCII and control characters')

    add.apply_async((2 ** 63 - 1, 2 ** 63, -2 ** 63 - 1, 2 ** 64, 10 ** 30,
                     -1, 0), task_id=tid(8))
    save_messages(app, 'big_ints', 'integers beyond int64')

    add.apply_async((1,), task_id=tid(9), headers={
        'x-custom': 'v', 'x-num': 5, 'x-list': [1, 'a', None],
        'x-dict': {'k': True}})
    save_messages(app, 'custom_headers', 'apply_async(headers={...})')

    add.apply_async((2, 2), task_id=tid(10), compression='zlib')
    save_messages(app, 'zlib', "compression='zlib' (application/x-gzip)")

    add.apply_async((2, 2), task_id=tid(11), compression='bzip2')
    save_messages(app, 'bzip2', "compression='bzip2'")

    long = ['x' * 300, 'y ' * 300, list(range(200)), [[[[1]]]]]
    add.apply_async((long,), {'deep': {'a': {'b': {'c': {'d': 1}}}}},
                    task_id=tid(12))
    save_messages(app, 'long_repr', 'argsrepr/kwargsrepr cut by saferepr')

    # A retry, published by the real Task.retry from a worker-like request.
    retrying = app.tasks['proj.retrying']
    retrying.push_request(
        id=tid(13), root_id=tid(13), parent_id=None, retries=0,
        args=[7], kwargs={}, reply_to=REPLY_TO, correlation_id=tid(13),
        delivery_info={'exchange': '', 'routing_key': 'celery',
                       'priority': 0},
        headers={'x-custom': 'kept'}, called_directly=False, is_eager=False,
        timelimit=[None, None], group=None, group_index=None)
    try:
        retrying.retry(countdown=30, exc=ValueError('boom'), throw=False)
    finally:
        retrying.pop_request()
    save_messages(app, 'retry', 'Task.retry(countdown=30) from a request')

    # celery.chord_unlock, as backends without a native join publish it.
    body = tsum.s()
    body.freeze(tid(15))
    header = GroupResult(tid(14), [AsyncResult(tid(16)), AsyncResult(tid(17))])
    app.backend.fallback_chord_unlock(header, body)
    save_messages(app, 'chord_unlock', 'backend.fallback_chord_unlock')

    # Hybrid: v2 headers with a v1 dict body, built from as_task_v2 and
    # as_task_v1 and published through the same producer.
    v2 = app.amqp.as_task_v2(tid(18), 'proj.add', (3, 4), {}, origin=ORIGIN)
    v1 = app.amqp.as_task_v1(tid(18), 'proj.add', (3, 4), {})
    with app.producer_or_acquire() as producer:
        app.amqp.send_task_message(
            producer, 'proj.add',
            task_message(headers=v2.headers, properties=v2.properties,
                         body=v1.body, sent_event=None))
    save_messages(app, 'hybrid', 'as_task_v2 headers with an as_task_v1 body')

    # Protocol 1.
    app1 = make_app(task_protocol=1)
    add1, mul1 = app1.tasks['proj.add'], app1.tasks['proj.mul']
    add1.apply_async((2, 2), task_id=tid(19), countdown=10, expires=60,
                     link=mul1.s(10), time_limit=10)
    save_messages(app1, 'v1', 'task_protocol=1 with countdown, expires, link')
    chain(add1.s(2, 2), add1.s(4), mul1.s(5)).apply_async(task_id=tid(20))
    save_messages(app1, 'v1_chain', 'task_protocol=1 chain: nested links')
    group(add1.s(1, 1), add1.s(2, 2)).apply_async(task_id=tid(21))
    save_messages(app1, 'v1_group', 'task_protocol=1 group: taskset')


def capture_results():
    app = make_app()
    backend = app.backend

    def stored(name, task_id):
        raw = backend.get(backend.get_key_for_task(task_id))
        write('result_' + name, {
            'name': name, 'backend': 'key-value (cache; redis code path)',
            'celery_version': celery.__version__,
            'meta': raw.decode() if isinstance(raw, bytes) else raw,
        })

    req = Context(id=tid(30), group=tid(31), parent_id=tid(32))
    # Context() resets children; set them afterwards, as the tracer does.
    req.children.append(AsyncResult(tid(33), parent=AsyncResult(tid(30))))
    backend.mark_as_done(tid(30), 3, request=req)
    stored('success', tid(30))

    req = Context(id=tid(34))
    req.children.append(
        GroupResult(tid(35), [AsyncResult(tid(36)), AsyncResult(tid(37))]))
    backend.mark_as_done(tid(34), {'a': [1, 2.5, None]}, request=req)
    stored('success_group_children', tid(34))

    try:
        raise ValueError('boom', 42)
    except ValueError as exc:
        tb = traceback.format_exc()
        backend.mark_as_failure(tid(38), exc, traceback=tb)
    stored('failure', tid(38))

    try:
        raise ValueError('boom')
    except ValueError as exc:
        backend.mark_as_retry(tid(39), exc, traceback=traceback.format_exc())
    stored('retry', tid(39))

    backend.mark_as_revoked(tid(40), reason='revoked')
    stored('revoked', tid(40))

    backend.store_result(tid(41), {'done': 1, 'total': 3}, 'PROGRESS')
    stored('custom_state', tid(41))

    backend.store_result(tid(42), {'pid': 4242, 'hostname': 'celery@golden'},
                         'STARTED')
    stored('started', tid(42))

    # rpc://: the body the backend publishes to the client's reply queue.
    rapp = make_app(backend='rpc://')
    rb = rapp.backend
    queue = 'replyq-golden'
    req = Context(id=tid(43), reply_to=queue, correlation_id=tid(43),
                  children=[])
    rb.store_result(tid(43), 'ok', 'SUCCESS', request=req)
    try:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
    except TypeError as exc:
        rb.mark_as_failure(tid(44), exc, traceback=traceback.format_exc(),
                           request=Context(id=tid(44), reply_to=queue,
                                           correlation_id=tid(44)))
    for i, m in enumerate(drain(rapp, queue)):
        write(f'result_rpc_{i}', {
            'name': f'rpc_{i}', 'backend': 'rpc',
            'celery_version': celery.__version__,
            'correlation_id': m['properties'].get('correlation_id'),
            'meta': base64.b64decode(m['body']).decode(),
        })


if __name__ == '__main__':
    capture_messages()
    capture_results()
    print('wrote', len(os.listdir(OUT)), 'files to', os.path.normpath(OUT))
