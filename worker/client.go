package worker

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/vhg/vhg-worker/protocol"
)

// Publisher sends task messages; every Broker is one.
type Publisher interface {
	Publish(ctx context.Context, to Route, env protocol.Envelope) error
}

// ClientConfig configures a Client. Every zero value has the meaning given.
type ClientConfig struct {
	// Routes maps task names to queues (Celery's task_routes).
	Routes map[string]string
	// DefaultQueue receives tasks with no route; empty means "celery".
	DefaultQueue string
	// Origin is written in the origin header; empty means none.
	Origin string
	// ReplyTo is the reply_to of messages this client starts (used by the
	// rpc:// backend); empty means none.
	ReplyTo string
	// Backend is consulted for chords: a ChordJoiner gets the chord size,
	// any other backend gets celery.chord_unlock tasks. Nil means no result
	// backend: chords are then refused.
	Backend Backend
	// Log receives errors that cannot be returned (errbacks that fail to
	// publish, say); nil discards them.
	Log logrus.FieldLogger
}

// Client applies signatures and canvases (chains, groups, chords) by
// publishing task messages in the format Python Celery produces. A Server
// uses one to continue workflows; programs use one to start them.
type Client struct {
	pub    Publisher
	cfg    ClientConfig
	parent *protocol.Message // the task applying signatures, if any
	// inlineErrback calls a new-style errback inline and reports whether
	// it did (set by the Server that owns the client; nil: none).
	inlineErrback func(ctx context.Context, failed *protocol.Message, eb protocol.Signature, exc protocol.ExceptionInfo, tb string) bool
}

// NewClient returns a Client publishing through pub.
func NewClient(pub Publisher, cfg ClientConfig) *Client {
	if cfg.DefaultQueue == "" {
		cfg.DefaultQueue = "celery"
	}
	return &Client{pub: pub, cfg: cfg}
}

// child returns a client whose messages are children of parent.
func (c *Client) child(parent *protocol.Message) *Client {
	cc := *c
	cc.parent = parent
	return &cc
}

// SendTask publishes one task by name, like Celery's app.send_task, and
// returns its id.
func (c *Client) SendTask(ctx context.Context, name string, args []any, kwargs map[string]any) (string, error) {
	return c.Apply(ctx, protocol.Signature{Task: name, Args: args, Kwargs: kwargs})
}

// Apply applies a signature of any kind (task, chain, group, chord) with
// optional partial args, like Signature.apply_async, and returns the id of
// its result: the task id, the last task of a chain, the group id, or the
// chord body's id.
func (c *Client) Apply(ctx context.Context, sig protocol.Signature, args ...any) (string, error) {
	var o applyOptions
	if c.parent != nil {
		o.parentID = c.parent.ID
		o.rootID = c.parent.RootID
		if o.rootID == "" {
			o.rootID = c.parent.ID
		}
	}
	return c.apply(ctx, sig, args, o)
}

// route picks the queue for a signature: its own options, then the routing
// table, then the default queue.
func (c *Client) route(sig protocol.Signature) Route {
	o := sig.Options
	switch {
	case o.Exchange != "":
		return Route{Exchange: o.Exchange, RoutingKey: o.RoutingKey}
	case o.Queue != "":
		return QueueRoute(o.Queue)
	case o.RoutingKey != "":
		return QueueRoute(o.RoutingKey)
	}
	if q, ok := c.cfg.Routes[sig.Task]; ok && q != "" {
		return QueueRoute(q)
	}
	return QueueRoute(c.cfg.DefaultQueue)
}

// publish encodes msg as protocol v2 and sends it.
func (c *Client) publish(ctx context.Context, msg *protocol.Message, to Route) error {
	if msg.Origin == "" {
		msg.Origin = c.cfg.Origin
	}
	env, err := protocol.Encode(msg)
	if err != nil {
		return fmt.Errorf("worker: encode %s[%s]: %w", msg.Task, msg.ID, err)
	}
	if err := c.pub.Publish(ctx, to, env); err != nil {
		return fmt.Errorf("worker: publish %s[%s] to %q/%q: %w", msg.Task, msg.ID, to.Exchange, to.RoutingKey, err)
	}
	return nil
}

// logError logs an error that cannot be returned, with the task it
// happened for, so an operator can grep for the task id.
func (c *Client) logError(req *protocol.Message, err error, msg string) {
	if c.cfg.Log == nil {
		return
	}
	c.cfg.Log.WithError(err).WithFields(logrus.Fields{"task": req.Task, "id": req.ID}).Error(msg)
}

// NewTaskID returns a random (version 4) UUID, as Celery's task ids are.
func NewTaskID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("worker: crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
