package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Levels beyond slog's four. RUST_LOG's trace is one slog step (4) below
// debug; off is above every level a record can carry, so nothing passes it.
const (
	LevelTrace slog.Level = slog.LevelDebug - 4
	LevelOff   slog.Level = math.MaxInt
)

// LogLevel is a parsed RUST_LOG-style filter: a default level and per-target
// overrides. A record from target t is logged when its level is at least
// [LogLevel.Level](t).
//
// The zero value logs everything at info and above (slog.LevelInfo is 0) with
// no overrides.
type LogLevel struct {
	// Default applies to targets without an override. ParseLogLevel sets it
	// to LevelOff when the string names no bare level, as ztunnel's filter
	// does ("xds=debug" alone logs nothing but xds).
	Default slog.Level
	// Targets maps a target name (e.g. "access", "xds", "ztunnel::proxy") to
	// its level. A target matches itself and every name it is a prefix of;
	// the longest match wins. Nil when there are no overrides.
	Targets map[string]slog.Level
}

// ParseLogLevel parses a RUST_LOG-style string: comma-separated directives,
// each a bare level ("info"), "target=level", or a bare target (meaning
// trace for that target). Levels are trace, debug, info, warn, error, off
// (any case) or the digits 0 (off) to 5 (trace). Later directives override
// earlier ones for the same target. Empty directives are skipped, so
// ParseLogLevel("") is a filter that logs nothing.
func ParseLogLevel(s string) (LogLevel, error) {
	l := LogLevel{Default: LevelOff}
	for _, d := range strings.Split(s, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		if strings.ContainsAny(d, "[]{}") {
			return LogLevel{}, fmt.Errorf("directive %q: span and field filters are not supported", d)
		}
		target, level, hasEq := strings.Cut(d, "=")
		if !hasEq {
			if lv, err := parseLevelName(d); err == nil {
				l.Default = lv
				continue
			}
			if err := checkTarget(d); err != nil {
				return LogLevel{}, fmt.Errorf("directive %q: %w", d, err)
			}
			l.setTarget(d, LevelTrace)
			continue
		}
		target = strings.TrimSpace(target)
		lv, err := parseLevelName(strings.TrimSpace(level))
		if err != nil {
			return LogLevel{}, fmt.Errorf("directive %q: %w", d, err)
		}
		if target == "" {
			l.Default = lv
			continue
		}
		if err := checkTarget(target); err != nil {
			return LogLevel{}, fmt.Errorf("directive %q: %w", d, err)
		}
		l.setTarget(target, lv)
	}
	return l, nil
}

func (l *LogLevel) setTarget(target string, lv slog.Level) {
	if l.Targets == nil {
		l.Targets = make(map[string]slog.Level)
	}
	l.Targets[target] = lv
}

func checkTarget(t string) error {
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c <= ' ' || c == '=' || c == 0x7f {
			return fmt.Errorf("invalid character %q in target", c)
		}
	}
	return nil
}

var errBadLevel = errors.New("want one of trace, debug, info, warn, error, off or 0-5")

func parseLevelName(s string) (slog.Level, error) {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		switch n {
		case 0:
			return LevelOff, nil
		case 1:
			return slog.LevelError, nil
		case 2:
			return slog.LevelWarn, nil
		case 3:
			return slog.LevelInfo, nil
		case 4:
			return slog.LevelDebug, nil
		case 5:
			return LevelTrace, nil
		}
		return 0, fmt.Errorf("invalid level %q: %w", s, errBadLevel)
	}
	switch strings.ToLower(s) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "off":
		return LevelOff, nil
	}
	return 0, fmt.Errorf("invalid level %q: %w", s, errBadLevel)
}

// LevelName is the RUST_LOG name of a level: trace, debug, info, warn,
// error or off. A level between two names takes the lower one's name.
func LevelName(lv slog.Level) string {
	switch {
	case lv >= LevelOff:
		return "off"
	case lv >= slog.LevelError:
		return "error"
	case lv >= slog.LevelWarn:
		return "warn"
	case lv >= slog.LevelInfo:
		return "info"
	case lv >= slog.LevelDebug:
		return "debug"
	}
	return "trace"
}

// Level returns the minimum level logged for target: the level of the
// longest configured target that is a prefix of it, else Default.
func (l LogLevel) Level(target string) slog.Level {
	best, found := -1, false
	var lv slog.Level
	for t, v := range l.Targets {
		if len(t) > best && strings.HasPrefix(target, t) {
			best, lv, found = len(t), v, true
		}
	}
	if found {
		return lv
	}
	return l.Default
}

// Enabled reports whether a record at level lv from target is logged.
func (l LogLevel) Enabled(target string, lv slog.Level) bool {
	return lv >= l.Level(target)
}

// String renders l in the syntax ParseLogLevel reads, default first and
// targets sorted, e.g. "info,access=debug,xds=trace"; parsing the result
// gives back an equal LogLevel (levels between names are rounded down).
func (l LogLevel) String() string {
	var b strings.Builder
	b.WriteString(LevelName(l.Default))
	keys := make([]string, 0, len(l.Targets))
	for t := range l.Targets {
		keys = append(keys, t)
	}
	sort.Strings(keys)
	for _, t := range keys {
		b.WriteByte(',')
		b.WriteString(t)
		b.WriteByte('=')
		b.WriteString(LevelName(l.Targets[t]))
	}
	return b.String()
}
