package protocol

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// formatISOTime writes t the way Python's datetime.isoformat() writes an
// aware datetime: "2026-11-27T12:26:13.421915+00:00". Like Python, the
// fraction is left out when the microseconds are zero, and the time is cut
// (not rounded) to microseconds.
func formatISOTime(t time.Time) string {
	b := make([]byte, 0, 32)
	b = fmt.Appendf(b, "%04d-%02d-%02dT%02d:%02d:%02d",
		t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second())
	if us := t.Nanosecond() / 1000; us != 0 {
		b = fmt.Appendf(b, ".%06d", us)
	}
	_, offset := t.Zone()
	sign := byte('+')
	if offset < 0 {
		sign, offset = '-', -offset
	}
	b = fmt.Appendf(b, "%c%02d:%02d", sign, offset/3600, offset/60%60)
	if offset%60 != 0 {
		b = fmt.Appendf(b, ":%02d", offset%60)
	}
	return string(b)
}

// parseISOTime reads the ISO 8601 forms Python writes and Celery reads:
//
//	2026-11-27
//	2026-11-27T12:26[:13[.421915]][Z|+HH:MM|+HHMM|+HH]
//
// The date and time may also be separated by a space. A time without an
// offset (Python's naive datetime) is taken as UTC, which is Celery's default
// timezone. The result is in UTC and cut to microseconds, the resolution of
// a Python datetime.
func parseISOTime(s string) (time.Time, error) {
	p := isoParser{s: s}
	year, month, day := p.digits(4), -1, -1
	if p.byte('-') {
		month = p.digits(2)
		if p.byte('-') {
			day = p.digits(2)
		}
	}
	if year < 1 || month < 1 || day < 1 {
		return time.Time{}, fmt.Errorf("protocol: not an ISO 8601 date: %q", s)
	}
	hour, minute, second, nanos := 0, 0, 0, 0
	loc := time.UTC
	if p.byte('T') || p.byte(' ') {
		hour = p.digits(2)
		if !p.byte(':') {
			return time.Time{}, fmt.Errorf("protocol: not an ISO 8601 time: %q", s)
		}
		minute = p.digits(2)
		if p.byte(':') {
			second = p.digits(2)
			if p.byte('.') || p.byte(',') {
				nanos = p.fraction()
			}
		}
		if hour < 0 || minute < 0 || second < 0 || nanos < 0 {
			return time.Time{}, fmt.Errorf("protocol: not an ISO 8601 time: %q", s)
		}
		var err error
		if loc, err = p.zone(); err != nil {
			return time.Time{}, fmt.Errorf("protocol: not an ISO 8601 time: %q: %w", s, err)
		}
	}
	if p.pos != len(s) {
		return time.Time{}, fmt.Errorf("protocol: not an ISO 8601 time: %q", s)
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, nanos, loc)
	// time.Date normalizes out-of-range values (Feb 30 -> Mar 2); Python
	// rejects them, and so do we.
	if t.Year() != year || int(t.Month()) != month || t.Day() != day ||
		t.Hour() != hour || t.Minute() != minute || t.Second() != second {
		return time.Time{}, fmt.Errorf("protocol: ISO 8601 time out of range: %q", s)
	}
	t = t.UTC().Truncate(time.Microsecond)
	if t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("protocol: ISO 8601 time out of range in UTC: %q", s)
	}
	return t, nil
}

// isoParser reads an ISO 8601 string left to right. Its methods return -1
// when the expected digits are missing.
type isoParser struct {
	s   string
	pos int
}

func (p *isoParser) byte(c byte) bool {
	if p.pos < len(p.s) && p.s[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *isoParser) digits(n int) int {
	if p.pos+n > len(p.s) {
		return -1
	}
	v := 0
	for _, c := range []byte(p.s[p.pos : p.pos+n]) {
		if c < '0' || c > '9' {
			return -1
		}
		v = v*10 + int(c-'0')
	}
	p.pos += n
	return v
}

// fraction reads the digits after the decimal point as nanoseconds,
// ignoring digits past the ninth.
func (p *isoParser) fraction() int {
	start := p.pos
	nanos, scale := 0, 100_000_000
	for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
		nanos += int(p.s[p.pos]-'0') * scale
		scale /= 10
		p.pos++
	}
	if p.pos == start {
		return -1
	}
	return nanos
}

func (p *isoParser) zone() (*time.Location, error) {
	if p.pos == len(p.s) {
		return time.UTC, nil // naive: UTC
	}
	if p.byte('Z') || p.byte('z') {
		return time.UTC, nil
	}
	sign := 1
	switch {
	case p.byte('+'):
	case p.byte('-'):
		sign = -1
	default:
		return nil, errors.New("bad utc offset")
	}
	hours := p.digits(2)
	minutes, seconds := 0, 0
	if p.byte(':') {
		minutes = p.digits(2)
		if p.byte(':') {
			seconds = p.digits(2)
		}
	} else if p.pos < len(p.s) {
		minutes = p.digits(2)
	}
	if hours < 0 || minutes < 0 || seconds < 0 || hours > 23 || minutes > 59 || seconds > 59 {
		return nil, errors.New("bad utc offset")
	}
	offset := sign * (hours*3600 + minutes*60 + seconds)
	if offset == 0 {
		return time.UTC, nil
	}
	return time.FixedZone("UTC"+strconv.Itoa(offset), offset), nil
}

// ParseISOTime reads a time as Celery writes it in the eta and expires
// headers (see parseISOTime); the result is in UTC.
func ParseISOTime(s string) (time.Time, error) { return parseISOTime(s) }
