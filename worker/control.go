package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
)

// This file is the remote control of a worker ("pidbox": celery inspect,
// celery control, celery status, Flower), independent of the transport:
// which requests are for this node, what each command answers, and the
// reply as a value. worker/rabbitmq carries requests and replies.

// ControlConfig configures a Control. Every zero value has the meaning
// given.
type ControlConfig struct {
	// Events serves enable_events, disable_events and heartbeat; nil makes
	// those commands answer with an error.
	Events *Events
	// Shutdown is called by the shutdown command to stop the worker softly
	// (typically the cancel func of Run's ctx); nil refuses the command.
	Shutdown func()
	// Broker describes the broker connection for stats ("broker":
	// hostname, port, userid, virtual_host, transport, ...) without the
	// password; nil reports "N/A".
	Broker map[string]any
	// Conf is added to the answer of the conf command (broker_url,
	// result_backend, ...; no passwords).
	Conf map[string]any
	// Log receives the commands run; nil discards them.
	Log logrus.FieldLogger
}

// Control answers remote control requests for a Server.
type Control struct {
	srv *Server
	cfg ControlConfig
	log logrus.FieldLogger
}

// NewControl returns the remote control of srv.
func NewControl(srv *Server, cfg ControlConfig) *Control {
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		log = l
	}
	return &Control{srv: srv, cfg: cfg, log: log.WithField("node", srv.cfg.NodeName)}
}

// ControlReply is the answer to one request: Body ({"<node>": result}) is
// published to To with the Ticket and Clock headers.
type ControlReply struct {
	To     protocol.ControlReplyTo
	Ticket string
	Clock  uint64
	Body   []byte
}

// Receive handles one request message as kombu's Node.handle_message does:
// it moves the clock, drops expired requests and those for other nodes,
// runs the command and returns the reply to send, or nil when the request
// wants none (or was not for this node). A command that fails is answered
// with {"error": "<repr>"}; only an unreadable request is an error.
func (c *Control) Receive(headers map[string]any, body []byte) (*ControlReply, error) {
	c.srv.clock.Forward()
	req, err := protocol.ParseControlRequest(headers, body)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	c.srv.clock.Adjust(req.Clock)
	if req.Expired(time.Now()) {
		c.log.WithField("method", req.Method).Debug("dropping expired control request")
		return nil, nil
	}
	ok, err := c.accepts(req)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	result, reply := c.Handle(req.Method, req.Arguments)
	if !reply || req.ReplyTo == nil {
		return nil, nil
	}
	b, err := protocol.ControlReplyJSON(c.srv.cfg.NodeName, result)
	if err != nil {
		b, _ = protocol.ControlReplyJSON(c.srv.cfg.NodeName, map[string]any{"error": fmt.Sprintf("EncodeError(%s)", protocol.PythonRepr(err.Error()))})
	}
	return &ControlReply{To: *req.ReplyTo, Ticket: req.Ticket, Clock: c.srv.clock.Forward(), Body: b}, nil
}

// accepts reports whether a request is for this node: named in
// destination, or matched by pattern and matcher, or (with neither) for
// every node.
func (c *Control) accepts(req protocol.ControlRequest) (bool, error) {
	node := c.srv.cfg.NodeName
	switch {
	case len(req.Destination) > 0:
		for _, d := range req.Destination {
			if d == node {
				return true, nil
			}
		}
		return false, nil
	case req.Pattern != "" && req.Matcher != "":
		return matchNode(node, req.Pattern, req.Matcher)
	default:
		return true, nil
	}
}

// matchNode matches a node name as kombu.matcher does: "glob" is Python's
// fnmatch over the whole name, "pcre" is re.match (anchored at the start).
func matchNode(node, pattern, matcher string) (bool, error) {
	var expr string
	switch matcher {
	case "glob":
		expr = globRegexp(pattern)
	case "pcre":
		expr = `^(?:` + pattern + `)`
	default:
		return false, fmt.Errorf("worker: no matcher installed for %q", matcher)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return false, fmt.Errorf("worker: control pattern %q: %w", pattern, err)
	}
	return re.MatchString(node), nil
}

// globRegexp translates an fnmatch pattern: * any run, ? one character,
// [seq] and [!seq] character sets; everything else literal.
func globRegexp(pattern string) string {
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for i := 0; i < len(pattern); i++ {
		switch ch := pattern[i]; ch {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			end := strings.IndexByte(pattern[i+1:], ']')
			if end == 0 && i+2 < len(pattern) { // "[]...]": ] is a member
				if e := strings.IndexByte(pattern[i+2:], ']'); e >= 0 {
					end = e + 1
				}
			}
			if end < 0 {
				b.WriteString(`\[`)
				continue
			}
			set := pattern[i+1 : i+1+end]
			i += end + 1
			negate := strings.HasPrefix(set, "!")
			if negate {
				set = set[1:]
			}
			set = strings.NewReplacer(`\`, `\\`, `[`, `\[`, `]`, `\]`, `^`, `\^`).Replace(set)
			if negate {
				b.WriteString(`[^` + set + `]`)
			} else {
				b.WriteString(`[` + set + `]`)
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(ch)))
		}
	}
	b.WriteString(`)$`)
	return b.String()
}

// controlCommand runs one command with its arguments.
type controlCommand func(c *Control, args map[string]any) (any, error)

// controlCommands are the commands a worker answers, by name and alias,
// as in celery/worker/control.py.
var controlCommands = map[string]controlCommand{
	"ping":            (*Control).ping,
	"report":          (*Control).report,
	"clock":           (*Control).clock,
	"stats":           (*Control).stats,
	"active":          (*Control).active,
	"dump_active":     (*Control).active,
	"reserved":        (*Control).reserved,
	"dump_reserved":   (*Control).reserved,
	"scheduled":       (*Control).scheduled,
	"dump_schedule":   (*Control).scheduled,
	"registered":      (*Control).registered,
	"dump_tasks":      (*Control).registered,
	"active_queues":   (*Control).activeQueues,
	"conf":            (*Control).conf,
	"dump_conf":       (*Control).conf,
	"revoked":         (*Control).revoked,
	"dump_revoked":    (*Control).revoked,
	"query_task":      (*Control).queryTask,
	"revoke":          (*Control).revoke,
	"terminate":       (*Control).terminate,
	"enable_events":   (*Control).enableEvents,
	"disable_events":  (*Control).disableEvents,
	"heartbeat":       (*Control).heartbeat,
	"shutdown":        (*Control).shutdown,
	"hello":           (*Control).hello,
	"rate_limit":      (*Control).rateLimit,
	"time_limit":      (*Control).timeLimit,
	"autoscale":       (*Control).autoscale,
	"pool_grow":       (*Control).poolGrow,
	"pool_shrink":     (*Control).poolShrink,
	"add_consumer":    (*Control).addConsumer,
	"cancel_consumer": (*Control).cancelConsumer,

	// Celery 5.3+.
	"revoke_by_stamped_headers": (*Control).revokeByStampedHeaders,
}

// errNoReply is returned by commands that answer nothing, as Celery's
// shutdown, which raises SystemExit before a reply is sent.
var errNoReply = errors.New("worker: no reply")

// Handle runs a command and returns the value a reply carries for this
// node, and whether a reply is sent at all. An unknown command or a failed
// one gives {"error": "<Python repr>"}, as kombu answers.
func (c *Control) Handle(method string, args map[string]any) (result any, reply bool) {
	defer func() {
		if p := recover(); p != nil {
			c.log.WithField("method", method).WithField("panic", p).Error("control command panicked")
			result, reply = map[string]any{"error": fmt.Sprintf("RuntimeError(%s)", protocol.PythonRepr(fmt.Sprint(p)))}, true
		}
	}()
	cmd, ok := controlCommands[method]
	if !ok {
		c.log.WithField("method", method).Error("no such control command")
		return map[string]any{"error": fmt.Sprintf("KeyError(%s)", protocol.PythonRepr(method))}, true
	}
	if args == nil {
		args = map[string]any{}
	}
	c.log.WithField("method", method).Debug("control command")
	result, err := cmd(c, args)
	switch {
	case errors.Is(err, errNoReply):
		return nil, false
	case err != nil:
		c.log.WithError(err).WithField("method", method).Error("control command failed")
		return map[string]any{"error": errorRepr(err)}, true
	}
	return result, true
}

// controlError is a command failure with the Python exception type a
// client shows.
type controlError struct {
	pyType string
	msg    string
}

func (e *controlError) Error() string { return "worker: " + e.msg }

func errorRepr(err error) string {
	var ce *controlError
	if errors.As(err, &ce) {
		return fmt.Sprintf("%s(%s)", ce.pyType, protocol.StrRepr(ce.msg))
	}
	return fmt.Sprintf("Exception(%s)", protocol.StrRepr(err.Error()))
}

func okReply(msg string) map[string]any { return map[string]any{"ok": msg} }

func (c *Control) ping(map[string]any) (any, error) { return okReply("pong"), nil }

// report answers `celery inspect report` with what identifies this worker.
func (c *Control) report(map[string]any) (any, error) {
	return okReply(fmt.Sprintf("software -> %s (Celery %s protocol) %s\nplatform -> system:%s arch:%s\nnode -> %s\nqueues -> %s",
		protocol.EventSoftwareImpl, protocol.EventSoftwareVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH,
		c.srv.cfg.NodeName, strings.Join(c.srv.Queues(), ", "))), nil
}

func (c *Control) clock(map[string]any) (any, error) {
	return map[string]any{"clock": c.srv.clock.Value()}, nil
}

// stats answers what `celery inspect stats` prints and Flower reads.
func (c *Control) stats(map[string]any) (any, error) {
	st := c.srv.Stats()
	total := make(map[string]any, len(st.Total))
	for name, n := range st.Total {
		total[name] = n
	}
	var broker any = "N/A"
	if c.cfg.Broker != nil {
		broker = c.cfg.Broker
	}
	out := map[string]any{
		"total":  total,
		"pid":    os.Getpid(),
		"clock":  strconv.FormatUint(c.srv.clock.Value(), 10),
		"uptime": int64(st.Uptime.Round(time.Second) / time.Second),
		"pool": map[string]any{
			"max-concurrency":          st.Concurrency,
			"processes":                []any{os.Getpid()},
			"max-tasks-per-child":      "N/A",
			"put-guarded-by-semaphore": false,
			"timeouts":                 []any{0, 0},
			"implementation":           "vhg-worker:goroutines",
		},
		"broker":         broker,
		"prefetch_count": st.Prefetch,
		"rusage":         rusage(),
	}
	// Celery's autoscaler component adds itself to stats when it runs.
	if a := c.srv.autoscaler.Load(); a != nil {
		out["autoscaler"] = a.info()
	}
	return out, nil
}

// rusage is Python's resource.getrusage(RUSAGE_SELF) as Celery reports it.
func rusage() any {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return "N/A"
	}
	seconds := func(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }
	return map[string]any{
		"utime": seconds(ru.Utime), "stime": seconds(ru.Stime),
		"maxrss": ru.Maxrss, "ixrss": ru.Ixrss, "idrss": ru.Idrss, "isrss": ru.Isrss,
		"minflt": ru.Minflt, "majflt": ru.Majflt, "nswap": ru.Nswap,
		"inblock": ru.Inblock, "oublock": ru.Oublock,
		"msgsnd": ru.Msgsnd, "msgrcv": ru.Msgrcv, "nsignals": ru.Nsignals,
		"nvcsw": ru.Nvcsw, "nivcsw": ru.Nivcsw,
	}
}

// requestInfo is Celery's Request.info(); safe shows the argument reprs.
func requestInfo(i RequestInfo, safe bool) map[string]any {
	var args, kwargs any = i.Args, i.Kwargs
	if i.Args == nil {
		args = []any{}
	}
	if i.Kwargs == nil {
		kwargs = map[string]any{}
	}
	if safe {
		args, kwargs = protocol.ArgsRepr(i.Args), protocol.PythonRepr(kwargs)
	}
	var start, pid any
	if !i.TimeStart.IsZero() {
		start = protocol.UnixSeconds(i.TimeStart)
		pid = i.WorkerPID
	}
	return map[string]any{
		"id": i.ID, "name": i.Task, "type": i.Task,
		"args": args, "kwargs": kwargs,
		"hostname":     i.Hostname,
		"time_start":   start,
		"acknowledged": i.Acknowledged,
		"delivery_info": map[string]any{
			"exchange": i.Delivery.Exchange, "routing_key": i.Delivery.RoutingKey,
			"priority": int(i.Priority), "redelivered": i.Delivery.Redelivered,
		},
		"worker_pid": pid,
	}
}

func requestInfos(infos []RequestInfo, safe bool) []any {
	out := make([]any, len(infos))
	for i, info := range infos {
		out[i] = requestInfo(info, safe)
	}
	return out
}

func (c *Control) active(args map[string]any) (any, error) {
	safe, _ := args["safe"].(bool)
	return requestInfos(c.srv.Active(), safe), nil
}

func (c *Control) reserved(map[string]any) (any, error) {
	return requestInfos(c.srv.Reserved(), false), nil
}

func (c *Control) scheduled(map[string]any) (any, error) {
	held := c.srv.Scheduled()
	out := make([]any, len(held))
	for i, r := range held {
		out[i] = map[string]any{
			"eta":      r.ETA,
			"priority": int(r.Priority),
			"request":  requestInfo(r, false),
		}
	}
	return out, nil
}

// registered lists the task names, without Celery's builtins unless the
// builtins argument is true.
func (c *Control) registered(args map[string]any) (any, error) {
	builtins, _ := args["builtins"].(bool)
	var names []any
	for _, name := range c.srv.mux.Names() {
		if builtins || !strings.HasPrefix(name, "celery.") {
			names = append(names, name)
		}
	}
	if names == nil {
		names = []any{}
	}
	return names, nil
}

// activeQueues describes each consumed queue as kombu's Queue.as_dict
// does, for queues declared the way Celery declares them by default.
func (c *Control) activeQueues(map[string]any) (any, error) {
	queues := c.srv.Queues()
	out := make([]any, len(queues))
	for i, q := range queues {
		out[i] = map[string]any{
			"name": q,
			"exchange": map[string]any{
				"name": q, "type": "direct", "arguments": nil, "durable": true,
				"passive": false, "auto_delete": false, "delivery_mode": nil, "no_declare": false,
			},
			"routing_key": q, "queue_arguments": nil, "binding_arguments": nil,
			"consumer_arguments": nil, "durable": true, "exclusive": false,
			"auto_delete": false, "no_ack": false, "alias": nil, "bindings": []any{},
			"no_declare": nil, "expires": nil, "message_ttl": nil, "max_length": nil,
			"max_length_bytes": nil, "max_priority": nil,
		}
	}
	return out, nil
}

// conf answers a small configuration dict with Celery's setting names.
func (c *Control) conf(map[string]any) (any, error) {
	cfg := c.srv.cfg
	consumed := c.srv.Queues()
	queues := make([]any, len(consumed))
	for i, q := range consumed {
		queues[i] = q
	}
	routes := make(map[string]any, len(cfg.Routes))
	for name, q := range cfg.Routes {
		routes[name] = map[string]any{"queue": q}
	}
	out := map[string]any{
		"worker_concurrency":         cfg.Concurrency,
		"worker_prefetch_multiplier": cfg.PrefetchMultiplier,
		"task_default_queue":         cfg.DefaultQueue,
		"task_routes":                routes,
		"worker_queues":              queues,
		"worker_send_task_events":    c.cfg.Events != nil && c.cfg.Events.TaskEvents(),
		"include":                    []any{},
	}
	for k, v := range c.cfg.Conf {
		out[k] = v
	}
	return out, nil
}

func (c *Control) revoked(map[string]any) (any, error) {
	ids := c.srv.Revoked()
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out, nil
}

// queryTask answers {id: [state, info]} for the requests this worker holds.
func (c *Control) queryTask(args map[string]any) (any, error) {
	ids, err := taskIDs(args, "ids")
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]any{}
	for _, group := range []struct {
		state string
		infos []RequestInfo
	}{
		{"active", c.srv.Active()},
		{"reserved", c.srv.Reserved()},
		{"reserved", c.srv.Scheduled()},
	} {
		for _, info := range group.infos {
			if want[info.ID] {
				out[info.ID] = []any{group.state, requestInfo(info, false)}
			}
		}
	}
	return out, nil
}

// taskIDs reads a task id or a list of them from args[key].
func taskIDs(args map[string]any, key string) ([]string, error) {
	switch v := args[key].(type) {
	case string:
		return []string{v}, nil
	case []any:
		ids := make([]string, 0, len(v))
		for _, x := range v {
			id, ok := x.(string)
			if !ok {
				return nil, &controlError{"TypeError", fmt.Sprintf("%s holds a %T, not a task id", key, x)}
			}
			ids = append(ids, id)
		}
		return ids, nil
	case nil:
		return nil, &controlError{"TypeError", fmt.Sprintf("missing required argument: '%s'", key)}
	default:
		return nil, &controlError{"TypeError", fmt.Sprintf("%s is a %T, not a task id or a list of them", key, v)}
	}
}

// signals maps the names Celery accepts for terminate to their numbers.
var signals = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15,
}

// signalNumber reads a signal given by name ("SIGTERM", "TERM", "KILL"),
// by number, or absent (SIGTERM).
func signalNumber(v any) (int, error) {
	switch s := v.(type) {
	case nil:
		return sigterm, nil
	case int64:
		return int(s), nil
	case string:
		if s == "" {
			return sigterm, nil
		}
		if n, err := strconv.Atoi(s); err == nil {
			return n, nil
		}
		if n, ok := signals[strings.TrimPrefix(strings.ToUpper(s), "SIG")]; ok {
			return n, nil
		}
		return 0, &controlError{"TypeError", fmt.Sprintf("Unsupported signal: %s", s)}
	default:
		return 0, &controlError{"TypeError", fmt.Sprintf("signal is a %T", v)}
	}
}

// revoke answers as Celery 5.2: "tasks <ids> flagged as revoked", or with
// terminate "terminate: <ids terminated>" / "terminate: tasks unknown".
func (c *Control) revoke(args map[string]any) (any, error) {
	ids, err := taskIDs(args, "task_id")
	if err != nil {
		return nil, err
	}
	terminate, _ := args["terminate"].(bool)
	signum, err := signalNumber(args["signal"])
	if err != nil {
		return nil, err
	}
	terminated := c.srv.Revoke(ids, terminate, signum)
	c.log.WithFields(logrus.Fields{"ids": ids, "terminate": terminate}).Info("tasks flagged as revoked")
	switch {
	case !terminate:
		return okReply(fmt.Sprintf("tasks %s flagged as revoked", strings.Join(ids, ", "))), nil
	case len(terminated) == 0:
		return okReply("terminate: tasks unknown"), nil
	default:
		return okReply("terminate: " + strings.Join(terminated, ", ")), nil
	}
}

// revokeByStampedHeaders is Celery 5.6's revoke_by_stamped_headers:
// headers is a dict (stamp name -> value or list of values) or, from
// "celery control revoke_by_stamped_headers k=v ...", a list of "k=v"
// strings; terminate and signal as for revoke. It answers as Celery 5.6:
//
//	headers {'mystamp': 'v1'} flagged as revoked, but not terminated
//	headers {'mystamp': 'v1'} were not terminated
//	headers defaultdict(<class 'set'>, {'mystamp': {'v1'}}) revoked
func (c *Control) revokeByStampedHeaders(args map[string]any) (any, error) {
	headers, names, err := stampedHeadersArg(args["headers"])
	if err != nil {
		return nil, err
	}
	terminate, _ := args["terminate"].(bool)
	signum, err := signalNumber(args["signal"])
	if err != nil {
		return nil, err
	}
	revoke := make(map[string][]any, len(headers))
	for h, v := range headers {
		if list, ok := v.([]any); ok {
			revoke[h] = list
		} else {
			revoke[h] = []any{v}
		}
	}
	terminated := c.srv.RevokeByStampedHeaders(revoke, terminate, signum)
	c.log.WithFields(logrus.Fields{"headers": headers, "terminate": terminate}).Info("stamped headers flagged as revoked")
	asked := orderedRepr(names, func(k string) string { return protocol.PythonRepr(headers[k]) })
	switch {
	case !terminate:
		return okReply(fmt.Sprintf("headers %s flagged as revoked, but not terminated", asked)), nil
	case len(terminated) == 0:
		return okReply(fmt.Sprintf("headers %s were not terminated", asked)), nil
	}
	var done []string
	for _, k := range names {
		if _, ok := terminated[k]; ok {
			done = append(done, k)
		}
	}
	sets := orderedRepr(done, func(k string) string {
		items := make([]string, len(terminated[k]))
		for i, v := range terminated[k] {
			items[i] = protocol.PythonRepr(v)
		}
		return "{" + strings.Join(items, ", ") + "}"
	})
	return okReply(fmt.Sprintf("headers defaultdict(<class 'set'>, %s) revoked", sets)), nil
}

// stampedHeadersArg reads revoke_by_stamped_headers' headers argument and
// returns it with its keys in order (a dict's sorted, a list's as given).
func stampedHeadersArg(v any) (map[string]any, []string, error) {
	switch v := v.(type) {
	case map[string]any:
		names := make([]string, 0, len(v))
		for k := range v {
			names = append(names, k)
		}
		sort.Strings(names)
		return v, names, nil
	case []any:
		headers := make(map[string]any, len(v))
		var names []string
		for _, x := range v {
			s, ok := x.(string)
			k, val, found := strings.Cut(s, "=")
			if !ok || !found {
				return nil, nil, &controlError{"IndexError", "list index out of range"}
			}
			// Celery keeps the text between the first and second "=".
			val, _, _ = strings.Cut(val, "=")
			if _, seen := headers[k]; !seen {
				names = append(names, k)
			}
			headers[k] = val
		}
		return headers, names, nil
	case nil:
		return nil, nil, &controlError{"TypeError", "missing required argument: 'headers'"}
	default:
		return nil, nil, &controlError{"AttributeError", fmt.Sprintf("'%s' object has no attribute 'items'", pythonTypeName(v))}
	}
}

// orderedRepr writes a Python dict repr of keys in order, each value by
// value(k).
func orderedRepr(keys []string, value func(string) string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = protocol.PythonRepr(k) + ": " + value(k)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func pythonTypeName(v any) string {
	switch v.(type) {
	case string:
		return "str"
	case bool:
		return "bool"
	case int64, int:
		return "int"
	case float64:
		return "float"
	}
	return fmt.Sprintf("%T", v)
}

func (c *Control) terminate(args map[string]any) (any, error) {
	withTerminate := make(map[string]any, len(args)+1)
	for k, v := range args {
		withTerminate[k] = v
	}
	withTerminate["terminate"] = true
	return c.revoke(withTerminate)
}

func (c *Control) events() (*Events, error) {
	if c.cfg.Events == nil {
		return nil, &controlError{"RuntimeError", "this worker has no event dispatcher"}
	}
	return c.cfg.Events, nil
}

func (c *Control) enableEvents(map[string]any) (any, error) {
	ev, err := c.events()
	if err != nil {
		return nil, err
	}
	if ev.SetTaskEvents(true) {
		c.log.Info("task events enabled by remote")
		return okReply("task events enabled"), nil
	}
	return okReply("task events already enabled"), nil
}

func (c *Control) disableEvents(map[string]any) (any, error) {
	ev, err := c.events()
	if err != nil {
		return nil, err
	}
	if ev.SetTaskEvents(false) {
		c.log.Info("task events disabled by remote")
		return okReply("task events disabled"), nil
	}
	return okReply("task events already disabled"), nil
}

// heartbeat sends a worker-heartbeat now; the reply carries nothing.
func (c *Control) heartbeat(map[string]any) (any, error) {
	ev, err := c.events()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev.Heartbeat(ctx)
	return nil, nil
}

// shutdown stops the worker softly, as Celery's WorkerShutdown; no reply.
func (c *Control) shutdown(args map[string]any) (any, error) {
	if c.cfg.Shutdown == nil {
		return nil, &controlError{"RuntimeError", "remote shutdown is not enabled on this worker"}
	}
	msg, _ := args["msg"].(string)
	if msg == "" {
		msg = "Got shutdown from remote"
	}
	c.log.Warn(msg)
	c.cfg.Shutdown()
	return nil, errNoReply
}

// hello is mingle: another node starting up sends its revoked ids and
// gets ours, with our clock.
func (c *Control) hello(args map[string]any) (any, error) {
	from, _ := args["from_node"].(string)
	if from == c.srv.cfg.NodeName {
		return nil, nil
	}
	c.log.WithField("from", from).Info("sync with node")
	var ids []string
	switch revoked := args["revoked"].(type) {
	case map[string]any:
		for id := range revoked {
			ids = append(ids, id)
		}
	case []any:
		for _, v := range revoked {
			if id, ok := v.(string); ok {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	// Python sends the times on its own monotonic clock, which mean
	// nothing here: the ids are remembered from now on.
	c.srv.revoked.add(time.Now(), ids...)
	return map[string]any{"revoked": c.srv.revokedSince(), "clock": c.srv.clock.Forward()}, nil
}
