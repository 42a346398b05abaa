// Command vhg-worker is a Celery worker in Go for the VHG adaptation
// pipeline. See README.md for set-up and usage.
//
//	vhg-worker worker [-b BROKER_URL] [--result-backend URL] [-Q q1,q2] [-c N] ...
//	vhg-worker encode [--output-dir DIR] [--renditions ...] INPUT
//	vhg-worker submit [-b URL] [--follow] INPUT
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

const usage = `vhg-worker: a Celery worker in Go for the VHG adaptation pipeline

Usage:
  vhg-worker worker [flags]          consume tasks from a Celery broker
  vhg-worker encode [flags] INPUT    encode INPUT in this process, no broker
  vhg-worker submit [flags] INPUT    send encode_workflow(INPUT) to the broker
  vhg-worker help                    show this help

Celery's options before the command (-A, -b, --result-backend, --workdir,
...) are taken as the command's own: "vhg-worker -A proj worker -c4" works.

Run "vhg-worker worker -h" for the flags of a command.
`

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	// Celery's options before the command (celery -A proj -b URL worker)
	// go after it.
	cmd, rest, err := splitGlobal(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vhg-worker: %v\n\n%s", err, usage)
		return 2
	}
	switch cmd {
	case "worker":
		return runWorker(rest)
	case "encode":
		return runEncode(rest)
	case "submit":
		return runSubmit(rest)
	default:
		fmt.Fprintf(os.Stderr, "vhg-worker: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
