"""Summarize the reports the conformance shim writes (one JSON line per
pytest report) and compare a Python-worker run with a Go-worker run.

    summarize.py NAME=REPORT.jsonl [NAME=REPORT.jsonl]

Prints, per run, the counts of passed, failed, skipped, errored, xfailed and
xpassed tests; with two runs, the counts side by side and every test whose
outcome differs, with the failure message of the second run. With two runs
it exits 1 when a test that passed in the first did not pass in the second.
"""
import json
import sys

OUTCOMES = ('passed', 'failed', 'skipped', 'errored', 'xfailed', 'xpassed')


def outcomes(path):
    """Return {nodeid: (outcome, message)} for one run."""
    tests = {}
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return tests
    for raw in lines:
        r = json.loads(raw)
        outcome, message = tests.get(r['nodeid'], ('passed', ''))
        if r['subtest']:
            if r['outcome'] == 'failed' and outcome == 'passed':
                outcome, message = 'failed', 'subtest: ' + r['message']
        elif r['when'] == 'call':
            if r['xfail']:
                outcome = 'xfailed' if r['outcome'] == 'skipped' else 'xpassed'
            elif r['outcome'] != 'passed' or outcome == 'passed':
                if outcome != 'failed':
                    outcome, message = r['outcome'], r['message']
        elif r['outcome'] == 'skipped':
            outcome, message = 'skipped', r['message']
        elif r['outcome'] == 'failed':
            outcome, message = 'errored', '%s: %s' % (r['when'], r['message'])
        tests[r['nodeid']] = (outcome, message)
    return tests


def counts(tests):
    c = {k: 0 for k in OUTCOMES}
    for outcome, _ in tests.values():
        c[outcome] += 1
    return c


def main(argv):
    runs = []
    for arg in argv:
        name, _, path = arg.partition('=')
        runs.append((name, outcomes(path)))
    if not runs:
        print(__doc__, file=sys.stderr)
        return 2
    width = max(len(n) for n, _ in runs) + 2
    print('%-10s' % '' + ''.join('%*s' % (width + 4, n) for n, _ in runs))
    for k in OUTCOMES + ('total',):
        row = [counts(t)[k] if k != 'total' else len(t) for _, t in runs]
        print('%-10s' % k + ''.join('%*d' % (width + 4, v) for v in row))
    for name, tests in runs:
        c = counts(tests)
        print('%s: %d passed, %d failed, %d skipped, %d errored '
              '(%d xfailed, %d xpassed)' % (
                  name, c['passed'], c['failed'], c['skipped'], c['errored'],
                  c['xfailed'], c['xpassed']))
    status = 0
    if len(runs) == 2:
        (a, ta), (b, tb) = runs
        # A test that passes on the first run and not on the second is a
        # regression: the exit status says so.
        if any(ta[n][0] == 'passed' and tb.get(n, ('absent', ''))[0] != 'passed' for n in ta):
            status = 1
        diff = sorted(n for n in set(ta) | set(tb)
                      if ta.get(n, ('absent', ''))[0] != tb.get(n, ('absent', ''))[0])
        print('\n%d tests with a different outcome (%s -> %s):' % (len(diff), a, b))
        for n in diff:
            oa = ta.get(n, ('absent', ''))[0]
            ob, msg = tb.get(n, ('absent', ''))
            print('  %-8s -> %-8s %s' % (oa, ob, n.split('::', 1)[-1]))
            if msg:
                print('      ' + msg.strip().splitlines()[0][:300])
    else:
        name, tests = runs[0]
        bad = sorted(n for n, (o, _) in tests.items() if o in ('failed', 'errored'))
        if bad:
            print('\nfailed or errored:')
        for n in bad:
            o, msg = tests[n]
            print('  %-8s %s' % (o, n.split('::', 1)[-1]))
            if msg:
                print('      ' + msg.strip().splitlines()[0][:300])
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
