package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vhg/vhg-worker/worker"
)

// Celery's command line (click) and Go's flag package differ in a few
// spellings. This file turns a command line written for `celery worker`
// into one the worker's FlagSet takes, so that a systemd unit or a
// Kubernetes manifest needs only its executable changed.

// globalOptions are the options `celery` takes before its subcommand
// (`celery -A proj -b URL worker ...`) that the subcommand also knows; each
// maps to whether it takes a value.
var globalOptions = map[string]bool{
	"A": true, "app": true,
	"b": true, "broker": true,
	"result-backend": true,
	"loader":         true,
	"config":         true,
	"workdir":        true,
	"C":              false, "no-color": false,
	"q": false, "quiet": false,
}

// splitGlobal moves the options given before the subcommand to after it:
// `-A proj -b URL worker -c 4` becomes ("worker", [-A proj -b URL -c 4]).
// A Celery option unknown before a subcommand is an error that names it.
func splitGlobal(args []string) (cmd string, rest []string, err error) {
	var global []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			return a, append(global, args[i+1:]...), nil
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, ok := globalOptions[name]
		if !ok {
			return "", nil, fmt.Errorf("unknown option %s before the command", a)
		}
		global = append(global, a)
		if takesValue && !hasValue {
			if i+1 == len(args) {
				return "", nil, fmt.Errorf("option %s needs a value", a)
			}
			i++
			global = append(global, args[i])
		}
	}
	return "", global, nil
}

// boolFlag is what flag.Value a boolean flag's value implements.
type boolFlag interface{ IsBoolFlag() bool }

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(boolFlag)
	return ok && b.IsBoolFlag()
}

// celeryArgs rewrites the short forms click takes and Go's flag package
// does not: a one-letter option glued to its value (-c4, -Qvideo,audio,
// -lINFO, -nw1@%h) and grouped one-letter booleans (-EC). Everything else
// passes unchanged, so an unknown option still reaches fs.Parse, which
// names it.
func celeryArgs(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) < 2 || a[0] != '-' || strings.Contains(a, "=") {
			out = append(out, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		if f := fs.Lookup(name); f != nil {
			out = append(out, a)
			if !isBool(f) && i+1 < len(args) {
				// The value is taken as it is, even when it starts with "-".
				i++
				out = append(out, args[i])
			}
			continue
		}
		if a[1] == '-' || len(name) < 2 {
			out = append(out, a)
			continue
		}
		first := fs.Lookup(name[:1])
		switch {
		case first != nil && !isBool(first):
			out = append(out, "-"+name[:1], name[1:])
		case allBoolFlags(fs, name):
			for _, c := range name {
				out = append(out, "-"+string(c))
			}
		default:
			out = append(out, a)
		}
	}
	return out
}

func allBoolFlags(fs *flag.FlagSet, letters string) bool {
	for _, c := range letters {
		f := fs.Lookup(string(c))
		if f == nil || !isBool(f) {
			return false
		}
	}
	return true
}

// inertOption is a Celery worker option that configures Python machinery
// this worker does not have. It is accepted, so that a command line
// written for `celery worker` starts unchanged, and named in one warning
// line at start.
type inertOption struct {
	names []string // the long name last; every one takes a value
	why   string
}

var inertOptions = []inertOption{
	{[]string{"A", "app"}, "the tasks are built into this binary"},
	{[]string{"loader"}, "the tasks are built into this binary"},
	{[]string{"config"}, "configuration comes from flags and the environment"},
	{[]string{"I", "include"}, "the tasks are built into this binary"},
	{[]string{"P", "pool"}, "tasks run as goroutines in this process; -c sets how many at once"},
	{[]string{"max-tasks-per-child"}, "there are no pool child processes to replace"},
	{[]string{"max-memory-per-child"}, "there are no pool child processes to replace"},
	{[]string{"S", "statedb"}, "revoked ids are kept in memory and shared with starting workers through mingle"},
	{[]string{"executable"}, "this binary runs the tasks itself"},
	{[]string{"uid"}, "set the user in the service manager (systemd User=)"},
	{[]string{"gid"}, "set the group in the service manager (systemd Group=)"},
	{[]string{"s", "schedule-filename"}, "this worker embeds no beat scheduler"},
	{[]string{"schedule"}, "this worker embeds no beat scheduler"},
	{[]string{"scheduler"}, "this worker embeds no beat scheduler"},
}

// refusedOptions are Celery worker options whose effect this worker cannot
// give; ignoring them would silently change what the deployment does, so
// they stop the start with the reason.
var refusedOptions = map[string]string{
	"B":       "run 'celery beat' as its own process: this worker embeds no beat scheduler",
	"beat":    "run 'celery beat' as its own process: this worker embeds no beat scheduler",
	"D":       "run it in the foreground under a service manager (systemd, supervisor)",
	"detach":  "run it in the foreground under a service manager (systemd, supervisor)",
	"purge":   "purge the queues with 'celery purge' before starting the worker",
	"discard": "purge the queues with 'celery purge' before starting the worker",
}

// inertFlags records which inert options a command line used.
type inertFlags struct{ seen []string }

// add defines every inert and refused option on fs.
func (f *inertFlags) add(fs *flag.FlagSet) {
	for _, o := range inertOptions {
		long := o.names[len(o.names)-1]
		for _, name := range o.names {
			fs.Func(name, "accepted and ignored: "+o.why, func(string) error {
				f.seen = append(f.seen, "--"+long+": "+o.why)
				return nil
			})
		}
	}
	for name, why := range refusedOptions {
		fs.BoolFunc(name, "refused: "+why, func(string) error {
			return fmt.Errorf("not supported: %s", why)
		})
	}
}

// secondsFlag is a duration given in seconds as a float, as Celery's
// --time-limit and --soft-time-limit take it.
type secondsFlag struct{ d *time.Duration }

func (s secondsFlag) String() string {
	if s.d == nil || *s.d == 0 {
		return ""
	}
	return strconv.FormatFloat(s.d.Seconds(), 'f', -1, 64)
}

func (s secondsFlag) Set(v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1e9 {
		return fmt.Errorf("want seconds, a number >= 0")
	}
	*s.d = time.Duration(f * float64(time.Second))
	return nil
}

// optimization checks Celery's -O: "default" and "fair" both describe what
// this worker always does (a message goes to a slot only once one is free).
func optimization(v string) error {
	switch v {
	case "default", "fair":
		return nil
	}
	return fmt.Errorf("want default or fair, not %q", v)
}

// autoscaleFlag is Celery's --autoscale=MAX,MIN (MIN defaults to 0, which
// this worker raises to 1).
type autoscaleFlag struct{ a *worker.Autoscale }

func (f autoscaleFlag) String() string {
	if f.a == nil || f.a.Max == 0 {
		return ""
	}
	return fmt.Sprintf("%d,%d", f.a.Max, f.a.Min)
}

func (f autoscaleFlag) Set(v string) error {
	maxS, minS, _ := strings.Cut(v, ",")
	hi, err := strconv.Atoi(strings.TrimSpace(maxS))
	if err != nil || hi < 1 {
		return fmt.Errorf("want MAX,MIN with MAX >= 1, not %q", v)
	}
	lo := 0
	if strings.TrimSpace(minS) != "" {
		if lo, err = strconv.Atoi(strings.TrimSpace(minS)); err != nil || lo < 0 || lo > hi {
			return fmt.Errorf("want MAX,MIN with 0 <= MIN <= MAX, not %q", v)
		}
	}
	f.a.Max, f.a.Min = hi, lo
	return nil
}
