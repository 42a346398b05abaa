# Appended by testdata/conformance/run.sh to a copy of Celery's
# t/integration/conftest.py (never to the checkout itself). It changes two
# things, both through pytest fixtures:
#
#   * every run gets its own queue (CONFORMANCE_QUEUE), so a run never takes
#     messages meant for another worker on the same RabbitMQ;
#   * with CONFORMANCE_WORKER=go, the suite's embedded Python worker is not
#     started: the Go worker (cmd/celery-conformance-worker), started by
#     run.sh on that queue, runs the tasks. The fixture waits until it
#     answers a ping.
import os as _conformance_os
import time as _conformance_time

import pytest as _conformance_pytest

_CONFORMANCE_QUEUE = _conformance_os.environ.get('CONFORMANCE_QUEUE', 'celery')
_CONFORMANCE_WORKER = _conformance_os.environ.get('CONFORMANCE_WORKER', 'python')
_CONFORMANCE_NODE = _conformance_os.environ.get('CONFORMANCE_NODE', '')


@_conformance_pytest.fixture(scope='session')
def celery_config():
    config = {
        'broker_url': TEST_BROKER,
        'result_backend': TEST_BACKEND,
        'task_default_queue': _CONFORMANCE_QUEUE,
        'cassandra_servers': ['localhost'],
        'cassandra_keyspace': 'tests',
        'cassandra_table': 'tests',
        'cassandra_read_consistency': 'ONE',
        'cassandra_write_consistency': 'ONE'
    }
    # The 5.6 suite's own celery_config adds result_extended.
    if _conformance_os.environ.get('CONFORMANCE_CELERY_VERSION', '').startswith('5.6'):
        config['result_extended'] = True
    return config


@_conformance_pytest.fixture(scope='session')
def celery_class_tasks():
    # Celery 5.2.6 registers ClassBasedAutoRetryTask unbound; the prefork
    # pool's children then die in build_tracer ('NoneType' object has no
    # attribute 'push') and the embedded worker never starts. The canvas
    # suite does not use that task (test_tasks.py does).
    return []


@_conformance_pytest.fixture(scope='session', autouse=True)
def conformance_worker_for_every_test(celery_session_worker):
    """Start the worker before the first test, not before the first test
    that asks for `manager`: the test_link_error tests send tasks without
    asking for it and would otherwise wait for a worker that is not there."""
    yield celery_session_worker


if _CONFORMANCE_WORKER == 'go':
    @_conformance_pytest.fixture(scope='session')
    def celery_session_worker(celery_session_app, celery_includes,
                              celery_class_tasks):
        # Register the task modules in this process, as the embedded worker
        # fixture does: the tests build signatures from them.
        for module in celery_includes:
            celery_session_app.loader.import_task_module(module)
        for class_task in celery_class_tasks:
            celery_session_app.tasks.register(class_task)
        deadline = _conformance_time.monotonic() + 60
        while True:
            replies = celery_session_app.control.ping(
                destination=[_CONFORMANCE_NODE], timeout=1.0)
            if replies:
                break
            if _conformance_time.monotonic() > deadline:
                raise RuntimeError(
                    'conformance: the Go worker %s did not answer a ping '
                    'within 60 s' % _CONFORMANCE_NODE)
        yield None


_CONFORMANCE_REPORT = _conformance_os.environ.get('CONFORMANCE_REPORT')


def pytest_runtest_logreport(report):
    """Write one JSON line per report (setup, call, teardown, subtests) to
    CONFORMANCE_REPORT, for run.sh's summary."""
    if not _CONFORMANCE_REPORT:
        return
    import json
    line = {
        'nodeid': report.nodeid,
        'when': report.when,
        'outcome': report.outcome,
        'xfail': hasattr(report, 'wasxfail'),
        'subtest': hasattr(report, 'context'),
        'duration': report.duration,
        'message': '',
    }
    if report.failed or report.skipped:
        crash = getattr(report.longrepr, 'reprcrash', None)
        if crash is not None:
            line['message'] = crash.message
        elif isinstance(report.longrepr, tuple):
            line['message'] = str(report.longrepr[-1])
        else:
            line['message'] = str(report.longrepr)[-500:]
    with open(_CONFORMANCE_REPORT, 'a') as f:
        f.write(json.dumps(line) + '\n')
