package config

import (
	"fmt"
	"strconv"
	"strings"
)

// VarError is one bad variable. FromEnv returns errors.Join of all of them;
// use errors.As (or range over the joined errors' Unwrap() []error) to get
// each. Its text starts with the variable's name:
//
//	HTTP2_FRAME_SIZE: invalid value "abc": not an unsigned integer
//	PROXY_WORKLOAD_INFO: required when PROXY_MODE=dedicated
type VarError struct {
	// Var is the variable (or, for mesh config fields, "field (source)").
	Var string
	// Value is the offending value when it is safe and useful to show; ""
	// otherwise (secrets, large documents, missing variables).
	Value string
	// Err is the reason.
	Err error

	showValue bool
}

func (e *VarError) Error() string {
	if e.showValue {
		return e.Var + ": invalid value " + strconv.Quote(e.Value) + ": " + oneLine(e.Err.Error())
	}
	return e.Var + ": " + oneLine(e.Err.Error())
}

// oneLine folds a multi-line reason (yaml lists one problem per line and
// quotes values with their newlines) into one line, so that every line of
// FromEnv's joined error starts with the name of its variable.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

func (e *VarError) Unwrap() error { return e.Err }

// badValue reports name's value v as invalid because of err.
func badValue(name, v string, err error) *VarError {
	return &VarError{Var: name, Value: v, Err: err, showValue: true}
}

// badVar reports a problem with name that is not about one shown value.
func badVar(name string, format string, args ...any) *VarError {
	return &VarError{Var: name, Err: fmt.Errorf(format, args...)}
}
