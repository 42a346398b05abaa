package main

import (
	"fmt"
	"strings"

	"github.com/vhg/vhg-worker/worker"
)

// pyParams describes a Python function's parameters, so a task's args and
// kwargs are bound to names as a Python call binds them.
type pyParams struct {
	fn string
	// names are the positional-or-keyword parameters, in order; the first
	// required of them have no default.
	names    []string
	required int
	defaults map[string]any
	// varargs (*args) takes extra positionals; kwonly are keyword-only
	// parameters with defaults; varkw (**kwargs) takes any other keyword.
	varargs bool
	kwonly  map[string]any
	varkw   bool
}

// bound is the result of binding: every named parameter, and *args.
type bound struct {
	named map[string]any
	rest  []any
}

// bind binds t's arguments, failing with the TypeError Python would raise.
func (p pyParams) bind(t *worker.Task) (bound, error) {
	b := bound{named: make(map[string]any)}
	args := t.Args()
	for i, a := range args {
		switch {
		case i < len(p.names):
			b.named[p.names[i]] = a
		case p.varargs:
			b.rest = append(b.rest, a)
		default:
			return b, worker.NewTaskError("TypeError", "%s() takes %d positional arguments but %d were given", p.fn, len(p.names), len(args))
		}
	}
	for k, v := range t.Kwargs() {
		_, isName := indexOf(p.names, k)
		_, isKwonly := p.kwonly[k]
		switch {
		case isName:
			if _, dup := b.named[k]; dup {
				return b, worker.NewTaskError("TypeError", "%s() got multiple values for argument '%s'", p.fn, k)
			}
		case isKwonly, p.varkw:
		default:
			return b, worker.NewTaskError("TypeError", "%s() got an unexpected keyword argument '%s'", p.fn, k)
		}
		b.named[k] = v
	}
	var missing []string
	for i, name := range p.names {
		if _, ok := b.named[name]; ok {
			continue
		}
		if i < p.required {
			missing = append(missing, "'"+name+"'")
			continue
		}
		b.named[name] = p.defaults[name]
	}
	for k, v := range p.kwonly {
		if _, ok := b.named[k]; !ok {
			b.named[k] = v
		}
	}
	if len(missing) > 0 {
		plural := ""
		if len(missing) > 1 {
			plural = "s"
		}
		return b, worker.NewTaskError("TypeError", "%s() missing %d required positional argument%s: %s", p.fn, len(missing), plural, strings.Join(missing, " and "))
	}
	return b, nil
}

func indexOf(names []string, name string) (int, bool) {
	for i, n := range names {
		if n == name {
			return i, true
		}
	}
	return -1, false
}

// str returns a parameter that must be a string.
func (b bound) str(name string) (string, error) {
	s, ok := b.named[name].(string)
	if !ok {
		return "", worker.NewTaskError("TypeError", "%s must be a str, not %s", name, pyTypeName(b.named[name]))
	}
	return s, nil
}

// list returns a parameter that must be a list.
func (b bound) list(name string) ([]any, error) {
	l, ok := b.named[name].([]any)
	if !ok {
		return nil, worker.NewTaskError("TypeError", "'%s' object is not iterable", pyTypeName(b.named[name]))
	}
	return l, nil
}

func (b bound) String() string { return fmt.Sprint(b.named, b.rest) }
