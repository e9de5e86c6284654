package logging

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Line is one log line written field by field, for a hot path whose lines carry more fields
// than a slog.Record keeps without allocating (five): the access log writes about fifteen per
// connection. With this package's Handler (and no group) the fields are formatted straight into
// the Line's own buffer, in the same bytes Handle would write; with any other handler they are
// collected as slog attributes and logged through the Logger at End.
//
// A Line belongs to the goroutine that called Begin until it calls End, which writes the line
// and returns the Line to a pool; it must not be used after End.
type Line struct {
	h     *Handler // this package's handler, or nil: collect attrs for log
	log   *slog.Logger
	level slog.Level
	msg   string
	w     fields      // h != nil: the line so far, in a buffer the Line keeps between uses
	attrs []slog.Attr // h == nil: the fields so far
}

var linePool = sync.Pool{New: func() any { return new(Line) }}

// maxPooledLine and maxPooledAttrs bound what a pooled Line keeps after a long line (a long
// error message, a caller with many fields).
const (
	maxPooledLine  = 4 << 10
	maxPooledAttrs = 32
)

// Begin starts a line at level l, or returns nil when log does not log at l.
func Begin(log *slog.Logger, l slog.Level, msg string) *Line {
	if !log.Enabled(context.Background(), l) {
		return nil
	}
	ln := linePool.Get().(*Line)
	ln.log, ln.level, ln.msg = log, l, msg
	if h, ok := log.Handler().(*Handler); ok && h.group == "" {
		ln.h = h
		ln.w = fields{b: ln.w.b[:0], format: h.out.format}
		ln.w.head(h.out.now(), l, h.scope, msg)
		for _, a := range h.attrs {
			emitWith(a, &ln.w)
		}
	}
	return ln
}

// Str adds a string field, written quoted as Handle writes strings.
func (ln *Line) Str(key, v string) {
	if ln.h == nil {
		ln.attrs = append(ln.attrs, slog.String(key, v))
		return
	}
	ln.w.add(key, slog.StringValue(v))
}

// Int adds an integer field.
func (ln *Line) Int(key string, v int64) {
	if ln.h == nil {
		ln.attrs = append(ln.attrs, slog.Int64(key, v))
		return
	}
	ln.w.add(key, slog.Int64Value(v))
}

// Any adds a field of any type, formatted as Handle formats slog.Any: addresses (netip's, or
// any type with IsValid and AppendTo) bare in text and without a String call.
func (ln *Line) Any(key string, v any) {
	if ln.h == nil {
		ln.attrs = append(ln.attrs, slog.Any(key, v))
		return
	}
	ln.w.add(key, slog.AnyValue(v))
}

// Millis adds a duration as the string "<whole milliseconds>ms" (ztunnel's access log form),
// without building the string.
func (ln *Line) Millis(key string, d time.Duration) {
	ms := d.Milliseconds()
	if ln.h == nil {
		ln.attrs = append(ln.attrs, slog.String(key, strconv.FormatInt(ms, 10)+"ms"))
		return
	}
	// Digits and "ms" need no escaping in either format, so this is the quoted string as
	// appendQuoted and appendJSONString would write it.
	ln.w.key(key)
	ln.w.b = append(ln.w.b, '"')
	ln.w.b = strconv.AppendInt(ln.w.b, ms, 10)
	ln.w.b = append(ln.w.b, `ms"`...)
}

// End writes the line and releases ln. The write error, if any, is returned as Handle returns
// it.
func (ln *Line) End() error {
	var err error
	if h := ln.h; h != nil {
		ln.w.tail()
		o := h.out
		o.mu.Lock()
		err = o.writeLocked(ln.w.b)
		o.mu.Unlock()
		if cap(ln.w.b) > maxPooledLine {
			ln.w.b = nil
		}
	} else {
		ln.log.LogAttrs(context.Background(), ln.level, ln.msg, ln.attrs...)
		clear(ln.attrs) // drop the values' references while pooled
		ln.attrs = ln.attrs[:0]
		if cap(ln.attrs) > maxPooledAttrs {
			ln.attrs = nil
		}
	}
	ln.h, ln.log = nil, nil
	linePool.Put(ln)
	return err
}
