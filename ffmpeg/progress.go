package ffmpeg

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// Progress is one progress report of a running ffmpeg.
type Progress struct {
	Time time.Duration // how much of the output is written, in media time

	// Percent is Time as a share of RunOptions.Duration, from 0 to 100; it is
	// 100 on the last report, and 0 before it when the duration is unknown.
	Percent float64

	Speed string // ffmpeg's own figure, e.g. "2.5x"; "N/A" early on
}

// progressWriter reads what `ffmpeg -progress pipe:1` writes to stdout:
// blocks of key=value lines, each ended by progress=continue or, for the last
// one, progress=end. It calls onProgress once per block, from the one
// goroutine that copies the child's stdout.
type progressWriter struct {
	duration   time.Duration
	onProgress func(Progress)

	line  []byte   // a line not ended yet
	block Progress // the block being read
}

// maxLine bounds the memory a garbled stream can take; progress lines are
// short.
const maxLine = 4096

func (w *progressWriter) Write(p []byte) (int, error) {
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			break
		}
		w.parseLine(string(w.line[:i]))
		w.line = w.line[i+1:]
	}
	if len(w.line) > maxLine {
		w.line = w.line[:0]
	}
	return len(p), nil
}

func (w *progressWriter) parseLine(line string) {
	key, value, ok := strings.Cut(strings.TrimSpace(line), "=")
	if !ok {
		return
	}
	switch key {
	case "out_time_us", "out_time_ms":
		// Both hold microseconds: out_time_ms is misnamed, and kept by
		// ffmpeg for compatibility. Early values can be "N/A" or negative
		// (audio priming); Time never goes backwards.
		if us, err := strconv.ParseInt(value, 10, 64); err == nil {
			if t := time.Duration(us) * time.Microsecond; t > w.block.Time {
				w.block.Time = t
			}
		}
	case "speed":
		w.block.Speed = strings.TrimSpace(value)
	case "progress":
		p := w.block
		switch {
		case value == "end":
			p.Percent = 100
		case w.duration > 0:
			p.Percent = min(100, 100*float64(p.Time)/float64(w.duration))
		}
		w.onProgress(p)
		// The next block starts from this one's time, so reports are
		// monotonic.
		w.block = Progress{Time: p.Time}
	}
}
