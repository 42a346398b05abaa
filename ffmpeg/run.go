package ffmpeg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ErrNotFound is wrapped by the error Run and Probe return when the program
// is not installed.
var ErrNotFound = errors.New("not found in PATH (apt-get install ffmpeg)")

// DefaultGracePeriod is how long a cancelled ffmpeg gets to stop on its own
// when RunOptions.GracePeriod is zero.
const DefaultGracePeriod = 5 * time.Second

// stderrTail is how much of the child's stderr an ExitError keeps.
const stderrTail = 4096

// RunOptions tune Run. The zero value runs without progress reports and
// with DefaultGracePeriod.
type RunOptions struct {
	// Duration is the duration of the source, used to turn the output time
	// into Progress.Percent; zero leaves Percent at 0 until the end.
	Duration time.Duration

	// OnProgress, if set, receives a report about twice a second and a last
	// one when ffmpeg is done (Percent 100). Reports are sequential and
	// monotonic; keep the callback short, it holds up reading the reports.
	OnProgress func(Progress)

	// GracePeriod is how long ffmpeg may take to stop after ctx is done
	// before it is killed; zero means DefaultGracePeriod.
	GracePeriod time.Duration
}

// ExitError reports an ffmpeg (or ffprobe) run that exited unsuccessfully.
type ExitError struct {
	Code   int    // exit status; -1 when killed by a signal
	Stderr string // the last 4 KiB of its stderr
}

// Error returns "ffmpeg: exit status N: " and the line of stderr that gives
// the reason: the refusal of an input format or protocol when there is
// one, else the last line, which is where ffmpeg puts the reason.
func (e *ExitError) Error() string {
	msg := fmt.Sprintf("ffmpeg: exit status %d", e.Code)
	if line := refusalLine(e.Stderr); line != "" {
		return msg + ": input refused: " + line
	}
	if line := lastLine(e.Stderr); line != "" {
		msg += ": " + line
	}
	return msg
}

// Is makes errors.Is(err, ErrInputRefused) hold for a run that a format or
// protocol whitelist stopped.
func (e *ExitError) Is(target error) bool {
	return target == ErrInputRefused && refusedInput(e.Stderr)
}

// refusalLine returns the line of stderr where ffmpeg refused a format or a
// protocol by its whitelist, without the "[hls @ 0x...] " prefix, or "".
func refusalLine(stderr string) string {
	for _, line := range strings.FieldsFunc(stderr, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if refusedInput(line) {
			if _, rest, ok := strings.Cut(line, "] "); ok && strings.HasPrefix(line, "[") {
				line = rest
			}
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// lastLine returns the line of s that gives the reason: the last one that
// reads like an error ("Error writing trailer: No space left on device",
// "Invalid data found"), else the last non-blank one. ffmpeg's own last
// words are "Conversion failed!" whatever the reason, after statistics
// lines, so they are passed over. ffmpeg ends progress lines with '\r',
// so both line ends count.
func lastLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	last := ""
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.TrimSpace(lines[i])
		if line == "" || line == "Conversion failed!" {
			continue
		}
		if last == "" {
			last = line
		}
		lower := strings.ToLower(line)
		for _, word := range []string{"error", "no space left", "invalid", "denied", "no such file", "not found", "unable"} {
			if strings.Contains(lower, word) {
				return line
			}
		}
	}
	if last == "" && strings.Contains(s, "Conversion failed!") {
		return "Conversion failed!"
	}
	return last
}

// Run runs argv (argv[0] looked up in PATH, never through a shell) and waits
// for it. With opts.OnProgress set it adds "-progress pipe:1 -nostats" right
// after argv[0] and reports progress.
//
// When ctx is done, ffmpeg gets SIGTERM, which it handles like 'q' on the
// console: it stops reading, writes the trailer and exits, so the output is a
// playable file up to where it stopped. If it is still running after
// opts.GracePeriod it gets SIGKILL. ffmpeg runs in its own process group and,
// once it has exited, whatever else is left in that group is killed, so no
// child outlives Run; on Linux the kernel also kills ffmpeg if the worker
// process dies first. The error then wraps ctx.Err() and context.Cause(ctx):
// errors.Is(err, context.Canceled) holds for a cancelled ctx.
//
// A run that exits unsuccessfully gives an *ExitError with the end of its
// stderr; a program not in PATH gives an error wrapping ErrNotFound.
func Run(ctx context.Context, argv []string, opts RunOptions) error {
	if len(argv) == 0 {
		return errors.New("ffmpeg: empty command")
	}
	var stdout io.Writer // nil: the child's stdout goes to /dev/null
	if opts.OnProgress != nil {
		argv = slices.Concat(argv[:1], []string{"-progress", "pipe:1", "-nostats"}, argv[1:])
		stdout = &progressWriter{duration: opts.Duration, onProgress: opts.OnProgress}
	}
	return run(ctx, argv, stdout, opts.GracePeriod)
}

// run is Run without the progress options; Probe reads stdout through it.
func run(ctx context.Context, argv []string, stdout io.Writer, grace time.Duration) error {
	name := filepath.Base(argv[0])
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("ffmpeg: %s %w", name, ErrNotFound)
	}
	if grace <= 0 {
		grace = DefaultGracePeriod
	}

	stderr := &tailBuffer{max: stderrTail}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	// Its own process group, so that one signal reaches every process it
	// starts and none of them gets the worker's terminal signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// And killed by the kernel if the worker dies without cancelling it
	// (kill -9, a crash), so that no encode outlives it (Linux).
	setDeathSignal(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	// After the grace period, exec kills ffmpeg and stops waiting for its
	// output pipes.
	cmd.WaitDelay = grace

	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return stopped(ctx, name)
		}
		return fmt.Errorf("ffmpeg: start %s: %w", name, err)
	}
	err = cmd.Wait()
	// ffmpeg is reaped, but its process group lives on while any member
	// does (and its id cannot be reused meanwhile): kill the stragglers.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)

	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return stopped(ctx, name)
	case errors.As(err, &exitErr):
		return &ExitError{Code: exitErr.ExitCode(), Stderr: stderr.String()}
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited successfully but something it started held its output
		// open; that process has just been killed.
		return nil
	default:
		return fmt.Errorf("ffmpeg: %s: %w", name, err)
	}
}

// stopped returns the error for a run that ctx ended. It wraps both ctx.Err()
// and the cause given to context.WithCancelCause, if any.
func stopped(ctx context.Context, name string) error {
	cause := context.Cause(ctx)
	if cause == nil || cause == ctx.Err() {
		return fmt.Errorf("ffmpeg: %s stopped: %w", name, ctx.Err())
	}
	return fmt.Errorf("ffmpeg: %s stopped: %w: %w", name, ctx.Err(), cause)
}

// tailBuffer is an io.Writer that keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if extra := len(b.buf) - b.max; extra > 0 {
		b.buf = append(b.buf[:0], b.buf[extra:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.buf) }
