// Package worker runs Celery tasks in Go: a Server consumes task messages
// from a Broker, runs them with the handlers of a ServeMux (keyed by Celery
// task name, like http.ServeMux) and stores their states in a Backend
// where Python clients read them. A Client publishes tasks and applies
// canvases as a Celery worker does.
//
// # A message's life
//
// One message goes through these stages, each in its own file:
//
//   - receive (server.go): the Broker's delivery is decoded
//     (protocol.Decode; a message that does not decode is rejected, with a
//     FAILURE stored when its id is readable), its task looked up (an
//     unknown one is rejected with NotRegistered), and checked: revoked,
//     expired, redelivered too often, or already settled before a lost
//     connection (holdlimit.go, revoked.go).
//   - hold (server.go, holdlimit.go): the request waits for its ETA, its
//     turn under a rate limit (ratelimit.go) and a free slot of the pool
//     (pool.go). An ETA a second or more away goes back to the broker
//     (DelayingDelivery); a message held too long is postponed or leased
//     (LeasingDelivery), so that no broker times it out.
//   - execute (execute.go): the handler runs with a ctx that carries the
//     time limits and revocation; its outcome is stored and the workflow
//     goes on (canvas.go: callbacks, chains, chord joins, errbacks).
//   - settle (execute.go, server.go): the message is acknowledged,
//     rejected or requeued by the rules below.
//
// A panic anywhere in these stages is caught (lastNet in server.go): the
// message is rejected without requeue, a FAILURE stored, and the worker
// goes on.
//
// # Acknowledgement
//
// As Celery's worker: a task acknowledges its message when it starts, or,
// registered with AcksLate, after its outcome is stored (a worker dying
// mid-task then leaves the message to be delivered again). A RejectError
// settles the message as the task asks; a hard stop requeues the acks_late
// tasks it cancelled. When the outcome cannot be stored even after the
// backend's retries, an acks_late message is given back to run again; an
// early-acknowledged one is logged and counted as lost (execute.go).
//
// # Canvas
//
// The Client applies signatures as Celery's apply_async does: options
// become headers, chains ride in the message (embed.chain, reversed),
// callbacks and errbacks in link/link_error, chords join in the backend
// (ChordJoiner) or, without one, by polling (celery.chord_unlock). The
// builtins celery.chain, group, chord, chord_unlock and accumulate are
// registered on every ServeMux a Server gets (builtins.go).
//
// # Writing an adapter
//
// A broker adapter implements Broker (Consume and Publish) and returns
// deliveries implementing Delivery; a result backend implements Backend.
// Everything else is optional, found by type assertion, and each interface
// says what the Server does without it:
//
//   - deliveries: StaleDelivery (the connection it came on is lost),
//     LeasingDelivery (hold long tasks past a consumer timeout),
//     DelayingDelivery (keep a message until its ETA), ReturningDelivery
//     (give a message back counted as a failed delivery);
//   - brokers: EventPublisher (events), Publisher (the Client);
//   - backends: ResultReader (chord_unlock, errbacks reading a state),
//     ChordJoiner (native chord join), ChordExtender (Task.AddToChord),
//     GroupReader (saved group results).
//
// worker/rabbitmq and worker/redis are the production adapters;
// worker/memory runs everything in process (tests and "vhg-worker
// encode"). The suites in worker/brokertest and worker/backendtest are
// what every adapter must pass.
package worker
