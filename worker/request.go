package worker

import "github.com/vhg/vhg-worker/protocol"

// The accessors below read the request the way a bound Celery task reads
// self.request (celery/app/task.py Context).

// ParentID returns the id of the task that applied this one, or "" when a
// client did (request.parent_id).
func (t *Task) ParentID() string { return t.Msg.ParentID }

// GroupID returns the id of the group or chord header this task belongs
// to, or "" (request.group).
func (t *Task) GroupID() string { return t.Msg.Group }

// GroupIndex returns the task's position in its group, and false when the
// message carries none (request.group_index).
func (t *Task) GroupIndex() (int, bool) {
	if t.Msg.GroupIndex == nil {
		return 0, false
	}
	return *t.Msg.GroupIndex, true
}

// Retries returns how many times the task has been retried: 0 on the first
// run (request.retries).
func (t *Task) Retries() int { return t.Msg.Retries }

// ReplacedTaskNesting returns how many Task.Replace calls led to this task
// (request.replaced_task_nesting).
func (t *Task) ReplacedTaskNesting() int { return t.Msg.ReplacedTaskNesting }

// Chord returns the body of the chord this task is a header member of, and
// false when it is none (request.chord).
func (t *Task) Chord() (protocol.Signature, bool) {
	if t.Msg.Chord == nil {
		return protocol.Signature{}, false
	}
	return *t.Msg.Chord, true
}

// Priority returns the priority the message was delivered with
// (request.delivery_info['priority']); 0 when it had none.
func (t *Task) Priority() int { return int(t.Msg.Priority) }

// IgnoreResult reports whether the task's result will not be stored: the
// message's ignore_result header or the task's IgnoreResult option.
func (t *Task) IgnoreResult() bool { return t.Msg.IgnoreResult || t.config.IgnoreResult }

// Properties returns the message properties as Celery's
// request.properties shows them for an AMQP message: correlation_id,
// reply_to, priority, delivery_mode, content_type and content_encoding
// (and expiration when set).
func (t *Task) Properties() map[string]any {
	props := map[string]any{
		"correlation_id":   t.Msg.CorrelationID,
		"reply_to":         t.Msg.ReplyTo,
		"priority":         int(t.Msg.Priority),
		"delivery_mode":    int(t.envelope.DeliveryMode),
		"content_type":     t.envelope.ContentType,
		"content_encoding": t.envelope.ContentEncoding,
	}
	if props["correlation_id"] == "" {
		props["correlation_id"] = t.Msg.ID
	}
	if t.envelope.Expiration != "" {
		props["expiration"] = t.envelope.Expiration
	}
	return props
}
