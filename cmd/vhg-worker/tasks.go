package main

import "github.com/vhg/vhg-worker/worker"

// registerTasks registers the tasks this binary runs. Celery's builtins
// (celery.accumulate, celery.chord_unlock, ...) are always registered by the
// worker itself.
func registerTasks(mux *worker.ServeMux) {}
