// Package logging is ztunnel's log/slog handler: Istio's text format (tab-separated time, level,
// scope, message, then key=value fields) or Istio's JSON format, with a level per scope
// (RUST_LOG-style "info,access=debug") that can be changed while the process runs.
//
// Every logger carries a scope (ztunnel calls it the target): "access" for connection logs,
// "xds", "proxy", and so on. Handlers are cheap values sharing one *Output, which owns the writer,
// the format and the current levels.
//
// A hot path whose lines carry many fields (the access log) writes them through a Line
// (Begin, then one call per field, then End), which formats into a pooled buffer without a
// slog.Record.
package logging

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/ztunnel-go/ztunnel/config"
)

// Format selects the line encoding.
type Format int

const (
	// Text is Istio's tab-separated format.
	Text Format = iota
	// JSON is one JSON object per line with level, time, scope and message keys.
	JSON
)

// Output is shared by every handler of a process. It serialises writes to w: each line is
// written by the goroutine that logs it, or queued for a drain goroutine (Queue, queue.go).
type Output struct {
	mu sync.Mutex // guards w, buf and q
	w  io.Writer
	// buf is reused for every line; owned under mu.
	buf []byte
	q   queue // lines waiting for the drain goroutine (queue.go); under mu

	format Format
	levels atomic.Pointer[config.LogLevel] // replaced whole by SetLevel; read on every Enabled
	now    func() time.Time                // immutable after NewOutput; tests override
}

// NewOutput returns an Output writing lines to w.
func NewOutput(w io.Writer, f Format, lvl config.LogLevel) *Output {
	o := &Output{w: w, format: f, now: time.Now}
	o.SetLevel(lvl)
	return o
}

// SetLevel replaces the levels of every scope at once.
func (o *Output) SetLevel(lvl config.LogLevel) {
	cp := lvl
	if lvl.Targets != nil {
		cp.Targets = make(map[string]slog.Level, len(lvl.Targets))
		for k, v := range lvl.Targets {
			cp.Targets[k] = v
		}
	}
	o.levels.Store(&cp)
}

// Level returns the current levels.
func (o *Output) Level() config.LogLevel { return *o.levels.Load() }

func (o *Output) enabled(scope string, l slog.Level) bool {
	return o.levels.Load().Enabled(scope, l)
}

// Logger returns a logger for one scope.
func (o *Output) Logger(scope string) *slog.Logger {
	return slog.New(&Handler{out: o, scope: scope})
}

// Handler is the slog.Handler of one scope. Its fields are immutable after creation.
type Handler struct {
	out   *Output
	scope string
	attrs []slog.Attr // from WithAttrs, already prefixed by groups
	group string      // dotted group prefix from WithGroup
}

// Enabled reports whether the scope logs at level l.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return h.out.enabled(h.scope, l) }

// WithAttrs returns a handler that adds attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), prefixed(h.group, attrs)...)
	return &n
}

// WithGroup returns a handler whose later attributes are prefixed "name.".
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.group = h.group + name + "."
	return &n
}

func prefixed(group string, attrs []slog.Attr) []slog.Attr {
	if group == "" {
		return attrs
	}
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = slog.Attr{Key: group + a.Key, Value: a.Value}
	}
	return out
}

// LevelName is Istio's lower-case level word; levels below debug are "trace".
func LevelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	default:
		return "error"
	}
}

// Handle formats and writes one record.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	o := h.out
	t := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	w := fields{b: o.buf[:0], format: o.format}
	w.head(t, r.Level, h.scope, r.Message)
	for _, a := range h.attrs {
		emitWith(a, &w)
	}
	r.Attrs(func(a slog.Attr) bool {
		emitAttr(h.group, a, &w)
		return true
	})
	w.tail()
	o.buf = w.b
	return o.writeLocked(w.b)
}

const timeFormat = "2006-01-02T15:04:05.000000Z"

// fields appends one line in a format: head, then each field, then tail. It is a value on its
// writer's stack; b is borrowed from the caller.
type fields struct {
	b      []byte
	format Format
	n      int // fields written so far
}

// head appends the time, level, scope and message.
func (w *fields) head(t time.Time, l slog.Level, scope, msg string) {
	if w.format == JSON {
		w.b = append(w.b, `{"level":`...)
		w.b = appendJSONString(w.b, LevelName(l))
		w.b = append(w.b, `,"time":"`...)
		w.b = t.UTC().AppendFormat(w.b, timeFormat)
		w.b = append(w.b, `","scope":`...)
		w.b = appendJSONString(w.b, scope)
		w.b = append(w.b, `,"message":`...)
		w.b = appendJSONString(w.b, msg)
		return
	}
	w.b = t.UTC().AppendFormat(w.b, timeFormat)
	w.b = append(w.b, '\t')
	w.b = append(w.b, LevelName(l)...)
	w.b = append(w.b, '\t')
	w.b = append(w.b, scope...)
	w.b = append(w.b, '\t')
	w.b = append(w.b, msg...)
}

// key appends the separator before a field and its key.
func (w *fields) key(key string) {
	if w.format == JSON {
		w.b = append(w.b, ',')
		w.b = appendJSONString(w.b, key)
		w.b = append(w.b, ':')
	} else {
		if w.n == 0 {
			w.b = append(w.b, '\t')
		} else {
			w.b = append(w.b, ' ')
		}
		w.b = append(w.b, key...)
		w.b = append(w.b, '=')
	}
	w.n++
}

// add appends one field.
func (w *fields) add(key string, v slog.Value) {
	w.key(key)
	if w.format == JSON {
		w.b = appendJSONValue(w.b, v)
	} else {
		w.b = appendTextValue(w.b, v)
	}
}

// tail ends the line.
func (w *fields) tail() {
	if w.format == JSON {
		w.b = append(w.b, "}\n"...)
	} else {
		w.b = append(w.b, '\n')
	}
}

// emitAttr resolves a and adds it to w with its key prefixed, or, for a group, each of its
// members with dotted keys. Empty attributes are skipped, as slog asks of handlers.
func emitAttr(prefix string, a slog.Attr, w *fields) {
	v := a.Value.Resolve()
	if v.Kind() != slog.KindGroup {
		key := a.Key
		if prefix != "" {
			key = prefix + a.Key
		}
		if key == "" && v.Equal(slog.Value{}) {
			return
		}
		w.add(key, v)
		return
	}
	p := prefix
	if a.Key != "" {
		p = prefix + a.Key + "."
	}
	for _, g := range v.Group() {
		emitAttr(p, g, w)
	}
}

// emitWith adds an attribute of the handler (from WithAttrs, already prefixed) to w as it is:
// its groups are not flattened.
func emitWith(a slog.Attr, w *fields) {
	if a.Equal(slog.Attr{}) {
		return
	}
	w.add(a.Key, a.Value.Resolve())
}

// addrText is an address that appends its text form as netip's types do (AppendTo), and says
// whether it is valid; a caller's compact address type can implement it to be logged without a
// string.
type addrText interface {
	IsValid() bool
	AppendTo(b []byte) []byte
}

// appendAddr appends the text form of a valid netip.Addr or netip.AddrPort (or a pointer to
// one), or of another valid addrText, to b without the string String would allocate; the bytes
// are the same. ok is false for any other value, and for invalid addresses, whose String
// differs from their AppendTo.
func appendAddr(b []byte, x any) (_ []byte, ok bool) {
	switch x := x.(type) {
	case netip.AddrPort:
		if x.IsValid() {
			return x.AppendTo(b), true
		}
	case *netip.AddrPort:
		if x != nil && x.IsValid() {
			return x.AppendTo(b), true
		}
	case netip.Addr:
		if x.IsValid() {
			return x.AppendTo(b), true
		}
	case *netip.Addr:
		if x != nil && x.IsValid() {
			return x.AppendTo(b), true
		}
	case addrText:
		if v := reflect.ValueOf(x); v.Kind() == reflect.Pointer && v.IsNil() {
			return b, false // a nil pointer to an address type with value methods
		}
		if x.IsValid() {
			return x.AppendTo(b), true
		}
	}
	return b, false
}

// plainJSON reports whether p can stand in a JSON string literal without escaping.
func plainJSON(p []byte) bool {
	for _, c := range p {
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// appendQuoted appends s as strconv.AppendQuote does (Go syntax, double quotes), taking a
// short cut for the common string of printable ASCII that needs no escape.
func appendQuoted(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return strconv.AppendQuote(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendTextValue writes strings quoted (as ztunnel's Debug formatting of string fields does)
// and numbers, booleans, durations and addresses bare.
func appendTextValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendQuoted(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindFloat64:
		return strconv.AppendFloat(b, v.Float64(), 'g', -1, 64)
	case slog.KindDuration:
		return append(b, v.Duration().String()...)
	case slog.KindTime:
		return v.Time().UTC().AppendFormat(b, timeFormat)
	default:
		if nb, ok := appendAddr(b, v.Any()); ok {
			return nb
		}
		if e, ok := v.Any().(error); ok {
			return appendQuoted(b, e.Error())
		}
		if s, ok := v.Any().(fmt.Stringer); ok {
			return append(b, s.String()...)
		}
		return strconv.AppendQuote(b, fmt.Sprint(v.Any()))
	}
}

func appendJSONValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendJSONString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindFloat64:
		return strconv.AppendFloat(b, v.Float64(), 'g', -1, 64)
	case slog.KindDuration:
		return appendJSONString(b, v.Duration().String())
	case slog.KindTime:
		return appendJSONString(b, v.Time().UTC().Format(timeFormat))
	default:
		start := len(b)
		if nb, ok := appendAddr(append(b, '"'), v.Any()); ok && plainJSON(nb[start+1:]) {
			return append(nb, '"')
		}
		b = b[:start]
		switch x := v.Any().(type) {
		case error:
			return appendJSONString(b, x.Error())
		case fmt.Stringer:
			return appendJSONString(b, x.String())
		}
		j, err := json.Marshal(v.Any())
		if err != nil {
			return appendJSONString(b, fmt.Sprint(v.Any()))
		}
		return append(b, j...)
	}
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
