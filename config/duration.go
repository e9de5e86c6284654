package config

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// errDurationOverflow is returned when a duration does not fit in a
// time.Duration (about 292 years).
var errDurationOverflow = errors.New("duration out of range")

// durationUnits maps each accepted unit spelling (lower case) to its length.
// It is the union of Go's time.ParseDuration units and the long and short
// names ztunnel's duration parser accepts. A month is 30 days and a year is
// 365 days, as in ztunnel.
var durationUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "nsec": time.Nanosecond, "nanosecond": time.Nanosecond, "nanoseconds": time.Nanosecond,
	"us": time.Microsecond, "µs": time.Microsecond, "μs": time.Microsecond, "usec": time.Microsecond, "µsec": time.Microsecond,
	"microsecond": time.Microsecond, "microseconds": time.Microsecond, "µsecond": time.Microsecond,
	"ms": time.Millisecond, "msec": time.Millisecond, "millisecond": time.Millisecond, "milliseconds": time.Millisecond,
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"w": 7 * 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
	"mon": 30 * 24 * time.Hour, "month": 30 * 24 * time.Hour, "months": 30 * 24 * time.Hour,
	"y": 365 * 24 * time.Hour, "year": 365 * 24 * time.Hour, "years": 365 * 24 * time.Hour,
}

// ParseDuration parses a non-negative duration in either Go syntax
// ("1h30m", "1.5s", "500ms") or ztunnel's (its Rust duration-str parser):
//
//   - a number without a unit is seconds ("30" is 30s);
//   - units are case-insensitive and may be spelled long ("5 minutes",
//     "1 day"), and include d, w, mon (30 days) and y (365 days);
//   - terms may be concatenated, separated by spaces, or joined with '+'
//     ("1h30m", "1m 30s", "3m+31" is 211s);
//   - a term may be multiplied by a unitless integer ("1m*10" is 10m).
//
// Negative durations and values beyond time.Duration's range are errors.
func ParseDuration(s string) (time.Duration, error) {
	p := durationParser{s: s}
	d, err := p.parse()
	if err != nil {
		return 0, err
	}
	return d, nil
}

// durationParser is a small recursive-descent parser over one input string.
// Grammar, with optional spaces between tokens:
//
//	sum     = product { ["+"] product }
//	product = term { "*" integer }
//	term    = number [unit]
type durationParser struct {
	s   string
	pos int
}

func (p *durationParser) parse() (time.Duration, error) {
	p.skipSpace()
	if p.pos == len(p.s) {
		return 0, errors.New("empty duration")
	}
	var total time.Duration
	for {
		d, err := p.product()
		if err != nil {
			return 0, err
		}
		if total, err = addDuration(total, d); err != nil {
			return 0, err
		}
		p.skipSpace()
		if p.pos == len(p.s) {
			return total, nil
		}
		if p.s[p.pos] == '+' {
			p.pos++
			p.skipSpace()
			if p.pos == len(p.s) {
				return 0, errors.New("missing term after '+'")
			}
		}
	}
}

func (p *durationParser) product() (time.Duration, error) {
	d, err := p.term()
	if err != nil {
		return 0, err
	}
	for {
		save := p.pos
		p.skipSpace()
		if p.pos == len(p.s) || p.s[p.pos] != '*' {
			p.pos = save
			return d, nil
		}
		p.pos++
		p.skipSpace()
		start := p.pos
		for p.pos < len(p.s) && isDigit(p.s[p.pos]) {
			p.pos++
		}
		if start == p.pos {
			return 0, fmt.Errorf("expected an integer after '*' at offset %d", start)
		}
		var n uint64
		for _, c := range []byte(p.s[start:p.pos]) {
			if n > (math.MaxInt64-9)/10 {
				return 0, errDurationOverflow
			}
			n = n*10 + uint64(c-'0')
		}
		if n != 0 && d > time.Duration(math.MaxInt64/n) {
			return 0, errDurationOverflow
		}
		d *= time.Duration(n)
	}
}

func (p *durationParser) term() (time.Duration, error) {
	start := p.pos
	if p.pos < len(p.s) && p.s[p.pos] == '-' {
		return 0, errors.New("negative duration")
	}
	intStart := p.pos
	for p.pos < len(p.s) && isDigit(p.s[p.pos]) {
		p.pos++
	}
	intPart := p.s[intStart:p.pos]
	fracPart := ""
	if p.pos < len(p.s) && p.s[p.pos] == '.' {
		p.pos++
		fs := p.pos
		for p.pos < len(p.s) && isDigit(p.s[p.pos]) {
			p.pos++
		}
		fracPart = p.s[fs:p.pos]
	}
	if intPart == "" && fracPart == "" {
		if p.pos < len(p.s) {
			return 0, fmt.Errorf("expected a number at offset %d, found %q", start, p.s[start:])
		}
		return 0, fmt.Errorf("expected a number at offset %d", start)
	}
	// The unit is a run of letters (µ and μ included), optionally after spaces.
	save := p.pos
	p.skipSpace()
	us := p.pos
	for p.pos < len(p.s) && isUnitByte(p.s[p.pos]) {
		p.pos++
	}
	unit := time.Second
	if us == p.pos {
		p.pos = save // no unit: seconds, and leave the spaces for the caller
	} else {
		u, ok := durationUnits[strings.ToLower(p.s[us:p.pos])]
		if !ok {
			return 0, fmt.Errorf("unknown unit %q", p.s[us:p.pos])
		}
		unit = u
	}
	return scaleDuration(intPart, fracPart, unit)
}

// scaleDuration computes (intPart.fracPart) * unit. The whole part is exact
// integer arithmetic. The fraction is scaled the way Go's time.ParseDuration
// scales it, so that every input both parsers accept gives the same
// nanoseconds: the leading fraction digits that fit in 63 bits, times
// unit/10^digits in float64, truncated (".00000000002m" is 1.2ns, so 1ns).
// A fraction of an hour (at most 3.6e12ns) fits float64's 53 bits, so it
// lands on the right nanosecond but for the product's rounding, which can
// carry it up one ("1.9999999999999999999999s" is 2s, in Go too). For the
// longer units (days to years) it may be a few nanoseconds off.
func scaleDuration(intPart, fracPart string, unit time.Duration) (time.Duration, error) {
	var whole int64
	for _, c := range []byte(intPart) {
		if whole > (math.MaxInt64-9)/10 {
			return 0, errDurationOverflow
		}
		whole = whole*10 + int64(c-'0')
	}
	if whole > math.MaxInt64/int64(unit) {
		return 0, errDurationOverflow
	}
	d := time.Duration(whole) * unit
	var frac uint64
	scale := 1.0
	for _, c := range []byte(fracPart) {
		if frac > math.MaxInt64/10 {
			break // later digits are below what the kept ones can express
		}
		next := frac*10 + uint64(c-'0')
		if next > 1<<63 {
			break
		}
		frac = next
		scale *= 10
	}
	if frac == 0 {
		return d, nil
	}
	return addDuration(d, time.Duration(float64(frac)*(float64(unit)/scale)))
}

func addDuration(a, b time.Duration) (time.Duration, error) {
	if a > math.MaxInt64-b {
		return 0, errDurationOverflow
	}
	return a + b, nil
}

func (p *durationParser) skipSpace() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isUnitByte reports whether c may be part of a unit name: ASCII letters and
// the UTF-8 bytes of µ (U+00B5, C2 B5) and μ (U+03BC, CE BC).
func isUnitByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == 0xC2 || c == 0xB5 || c == 0xCE || c == 0xBC
}
