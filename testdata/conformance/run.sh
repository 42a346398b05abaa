#!/usr/bin/env bash
# Runs Celery's own canvas integration suite (t/integration/test_canvas.py
# of a celery v5.2.6 or v5.6.x checkout) against the suite's embedded Python worker
# (the baseline) and against the Go worker cmd/celery-conformance-worker,
# then prints the counts side by side and every test whose outcome differs.
#
#   testdata/conformance/run.sh CELERY_SRC [both|python|go] [PYTEST_ARGS...]
#
# CELERY_SRC is a checkout (or `git archive`) of celery at tag v5.2.6 or
# v5.6.x; PYTHON must import the same celery version (Debian's python3 has
# 5.2.6; for 5.6.x point PYTHONPATH at checkouts of celery, kombu, py-amqp,
# billiard, vine and redis-py). The checkout is not modified: t/integration is copied to a work directory and
# testdata/conformance/conftest_shim.py is appended to the copy's conftest.py.
# Each run gets its own queue. pytest-rerunfailures is disabled (a failing
# test would otherwise run six times); RERUNS=1 keeps the suite's reruns.
#
# Environment: TEST_BROKER (default pyamqp://guest:guest@127.0.0.1:5672//),
# TEST_BACKEND (default redis://127.0.0.1:6379/0), OUT (where logs and
# reports go; default a new directory under /tmp), PYTHON (/usr/bin/python3).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

die() { echo "conformance: $*" >&2; exit 2; }

src=${1:-}
[ -n "$src" ] || die "usage: $0 CELERY_SRC [both|python|go] [PYTEST_ARGS...]
  CELERY_SRC is a celery v5.2.6 or v5.6.x checkout, e.g.
  git -C /path/to/celery.git worktree add /tmp/celery-5.2.6 v5.2.6"
shift
which=${1:-both}
[ $# -gt 0 ] && shift
case "$which" in both|python|go) ;; *) die "second argument must be both, python or go (got $which)" ;; esac

suite="$src/t/integration"
[ -f "$suite/test_canvas.py" ] && [ -f "$suite/tasks.py" ] && [ -f "$suite/conftest.py" ] ||
  die "$src is not a celery checkout: $suite/test_canvas.py, tasks.py or conftest.py is missing"
version=$(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$src/celery/__init__.py" 2>/dev/null || true)
case "$version" in
  5.2.6|5.6.*) ;;
  *) die "$src is celery '$version', not 5.2.6 or 5.6.x: check out tag v5.2.6 or v5.6.3" ;;
esac

PYTHON=${PYTHON:-/usr/bin/python3}
installed=$("$PYTHON" -c 'import celery; print(celery.__version__)' 2>/dev/null) ||
  die "$PYTHON cannot import celery (apt-get install python3-celery python3-redis, or PYTHONPATH for 5.6.x)"
[ "$installed" = "$version" ] || die "$PYTHON has celery $installed, the suite is for $version (set PYTHON and PYTHONPATH)"
"$PYTHON" -c 'import pytest, pytest_subtests, pytest_timeout, redis' 2>/dev/null ||
  die "missing Python test packages: apt-get install python3-pytest python3-pytest-subtests python3-pytest-timeout python3-redis"
case "$version" in
  5.6.*) "$PYTHON" -c 'import pydantic' 2>/dev/null || die "the $version suite's tasks need pydantic: apt-get install python3-pydantic" ;;
esac
export CONFORMANCE_CELERY_VERSION=$version

export TEST_BROKER=${TEST_BROKER:-pyamqp://guest:guest@127.0.0.1:5672//}
export TEST_BACKEND=${TEST_BACKEND:-redis://127.0.0.1:6379/0}
OUT=${OUT:-$(mktemp -d /tmp/conformance.XXXXXX)}
mkdir -p "$OUT"

# The work directory: a package t.integration with the shimmed conftest.
work="$OUT/suite"
rm -rf "$work"
mkdir -p "$work/t/integration"
cp "$src/t/__init__.py" "$work/t/"
cp "$suite/__init__.py" "$suite/tasks.py" "$suite/test_canvas.py" "$work/t/integration/"
cat "$suite/conftest.py" "$here/conftest_shim.py" >"$work/t/integration/conftest.py"

pytest_args=(-o "python_classes=test_*" -p celery.contrib.pytest -p no:cacheprovider -q -rfE --timeout=300)
[ "${RERUNS:-0}" = 1 ] || pytest_args+=(-p no:rerunfailures)
pytest_args+=("$@")

# delete_queue NAME: removes a run's queue, the exchange Celery declares
# with it and the Go worker's guard queue, so runs leave nothing behind.
delete_queue() {
  "$PYTHON" - "$1" <<'PY' || echo "conformance: could not delete queue $1" >&2
import os, sys
from kombu import Connection
queue = sys.argv[1]
with Connection(os.environ["TEST_BROKER"]) as conn:
    ch = conn.channel()
    for name in (queue, "vhg.guards." + queue):
        ch.queue_delete(name)
    ch.exchange_delete(queue)
PY
}

# run_suite NAME: runs the suite against the worker NAME (python or go).
run_suite() {
  local name=$1 queue="conformance.$1.$$" node="conformance-go-$$@$(hostname)"
  local report="$OUT/$name.jsonl" log="$OUT/$name.pytest.log" go_pid=""
  rm -f "$report"
  if [ "$name" = go ]; then
    (cd "$root" && /usr/local/go/bin/go build -o "$OUT/celery-conformance-worker" ./cmd/celery-conformance-worker) ||
      die "building cmd/celery-conformance-worker failed"
    "$OUT/celery-conformance-worker" -b "${TEST_BROKER/#pyamqp/amqp}" -result-backend "$TEST_BACKEND" \
      -Q "$queue" -n "$node" -c "${GO_CONCURRENCY:-8}" >"$OUT/go.worker.log" 2>&1 &
    go_pid=$!
  fi
  echo "conformance: $name worker, queue $queue, log $log"
  local start=$SECONDS rc=0
  (cd "$work" && CONFORMANCE_WORKER=$name CONFORMANCE_QUEUE=$queue CONFORMANCE_NODE=$node \
    CONFORMANCE_REPORT=$report "$PYTHON" -m pytest "${pytest_args[@]}" t/integration/test_canvas.py) >"$log" 2>&1 || rc=$?
  if [ -n "$go_pid" ]; then
    kill -TERM "$go_pid" 2>/dev/null || true
    wait "$go_pid" 2>/dev/null || true
  fi
  delete_queue "$queue"
  echo "conformance: $name run took $((SECONDS - start)) s (pytest exit $rc): $(tail -n 1 "$log")"
  [ -s "$report" ] || die "$name run produced no report; see $log"
}

runs=()
if [ "$which" != go ]; then run_suite python; runs+=("python=$OUT/python.jsonl"); fi
if [ "$which" != python ]; then run_suite go; runs+=("go=$OUT/go.jsonl"); fi
status=0
"$PYTHON" "$here/summarize.py" "${runs[@]}" >"$OUT/summary.txt" || status=$?
cat "$OUT/summary.txt"
echo "conformance: logs and reports in $OUT"
# Non-zero when a test that passes with the Python worker does not with Go.
exit "$status"
