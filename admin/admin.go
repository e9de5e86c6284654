// Package admin serves ztunnel's operator endpoints: the admin port (15000: /config_dump,
// /logging, /quitquitquit, /debug/pprof/, an index on /), the stats port (15020: /metrics and
// /stats/prometheus) and the readiness port (15021: /healthz/ready).
package admin

import (
	"encoding/json"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"

	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/logging"
	"github.com/ztunnel-go/ztunnel/metrics"
	"github.com/ztunnel-go/ztunnel/tls/certs"
	"github.com/ztunnel-go/ztunnel/version"
	"github.com/ztunnel-go/ztunnel/workload"
)

// Readiness tracks what start-up still waits for. The zero value is not usable; use NewReadiness.
type Readiness struct {
	mu      sync.Mutex
	pending map[string]int // task name -> outstanding registrations
}

// NewReadiness returns a tracker with nothing pending.
func NewReadiness() *Readiness { return &Readiness{pending: make(map[string]int)} }

// Register adds a pending task; the returned func marks it done (idempotent).
func (r *Readiness) Register(name string) func() {
	r.mu.Lock()
	r.pending[name]++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if r.pending[name]--; r.pending[name] <= 0 {
				delete(r.pending, name)
			}
			r.mu.Unlock()
		})
	}
}

// Pending lists the tasks not yet done, sorted.
func (r *Readiness) Pending() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.pending))
	for k := range r.pending {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Server holds what the endpoints read. Fields are set before the handlers are used and not
// changed afterwards.
type Server struct {
	Store    *workload.Store
	Certs    *certs.Manager
	Config   any // JSON view of the configuration (secrets redacted)
	Log      *logging.Output
	Metrics  *metrics.Registry
	Ready    *Readiness
	Version  version.BuildInfo // the "version" section of /config_dump
	Shutdown func()            // called by POST /quitquitquit; returns when the drain has started
	// InitialLevel is what POST /logging?reset restores.
	InitialLevel config.LogLevel
	ExtraDump    func(map[string]any)
}

// AdminHandler is the mux of the admin port.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/config_dump", s.configDump)
	mux.HandleFunc("/logging", s.logging)
	mux.HandleFunc("/quitquitquit", s.quit)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", profile) // ztunnel's parameters (profile.go)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/{$}", s.index)
	return mux
}

// StatsHandler is the mux of the stats port.
func (s *Server) StatsHandler() http.Handler {
	mux := http.NewServeMux()
	h := s.Metrics.Handler()
	mux.Handle("/metrics", h)
	mux.Handle("/stats/prometheus", h)
	return mux
}

// ReadinessHandler is the mux of the readiness port.
func (s *Server) ReadinessHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if p := s.Ready.Pending(); len(p) > 0 {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "not ready, pending: %s\n", strings.Join(p, ", "))
			return
		}
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "ready\n")
	})
	return mux
}

var endpoints = []struct{ path, help string }{
	{"/config_dump", "dump the current ztunnel configuration"},
	{"/logging", "query or change logging levels (POST /logging?level=<level>)"},
	{"/quitquitquit", "drain and exit the process (POST)"},
	{"/debug/pprof/", "Go runtime profiles"},
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	b.WriteString("<!DOCTYPE html><html><head><title>ztunnel admin</title></head><body><h1>ztunnel admin</h1><table>\n")
	for _, e := range endpoints {
		fmt.Fprintf(&b, "<tr><td><a href=%q>%s</a></td><td>%s</td></tr>\n", e.path, html.EscapeString(e.path), html.EscapeString(e.help))
	}
	b.WriteString("</table></body></html>\n")
	w.Write([]byte(b.String()))
}

// ConfigDump builds the /config_dump document in ztunnel's shape.
func (s *Server) ConfigDump() map[string]any {
	snap := s.Store.Snapshot()
	workloads := snap.Workloads()
	services := snap.Services()
	policies := snap.Policies().All()
	dump := map[string]any{
		"workloads":    orEmpty(workloads),
		"services":     orEmpty(services),
		"policies":     orEmpty(policies),
		"staticConfig": map[string]any{"workloads": []any{}, "policies": []any{}, "services": []any{}},
		"version":      s.Version,
		"config":       s.Config,
		"certificates": []any{},
	}
	if s.Certs != nil {
		dump["certificates"] = orEmpty(s.Certs.Dump())
	}
	if s.ExtraDump != nil {
		s.ExtraDump(dump)
	}
	return dump
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Server) configDump(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s.ConfigDump()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

const loggingHelp = `usage: POST /logging?level=<level>				(To change global levels)
usage: POST /logging?level={mod1}:{level1},{mod2}:{level2}	(To change specific mods' logging level)
usage: POST /logging?reset					(To reset to the levels given at start)
hint: loglevel:	error|warn|info|debug|trace|off
`

func (s *Server) logging(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	switch r.Method {
	case http.MethodGet:
		fmt.Fprintf(w, "current log level is %s\n", s.Log.Level())
		return
	case http.MethodPost:
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		fmt.Fprintf(w, "Invalid HTTP method\n %s", loggingHelp)
		return
	}
	q := r.URL.Query()
	level, hasLevel := q["level"]
	_, reset := q["reset"]
	if !hasLevel && !reset {
		fmt.Fprintf(w, "current log level is %s\n", s.Log.Level())
		return
	}
	next := s.Log.Level()
	if reset {
		next = s.InitialLevel
	}
	if hasLevel && level[0] != "" {
		var err error
		if next, err = applyLevel(next, level[0]); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "Invalid level provided: %s\n%s", level[0], loggingHelp)
			return
		}
	}
	s.Log.SetLevel(next)
	fmt.Fprintf(w, "current log level is %s\n", s.Log.Level())
}

func (s *Server) quit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprint(w, "shutdown now\n")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if s.Shutdown != nil {
		s.Shutdown()
	}
}

// applyLevel applies an admin level string to cur: a bare level ("debug") replaces the default,
// "{scope}:{level}" or "{scope}={level}" clauses change those scopes and keep the rest.
func applyLevel(cur config.LogLevel, spec string) (config.LogLevel, error) {
	next := config.LogLevel{Default: cur.Default, Targets: make(map[string]slog.Level, len(cur.Targets))}
	for k, v := range cur.Targets {
		next.Targets[k] = v
	}
	for clause := range strings.SplitSeq(spec, ",") {
		clause = strings.TrimSpace(strings.Replace(clause, ":", "=", 1))
		if clause == "" {
			continue
		}
		parsed, err := config.ParseLogLevel(clause)
		if err != nil {
			return cur, err
		}
		if !strings.Contains(clause, "=") {
			// A bare word must be a level; RUST_LOG would read it as a module name, ztunnel's
			// admin endpoint refuses it.
			if len(parsed.Targets) != 0 {
				return cur, fmt.Errorf("level %s is invalid", clause)
			}
			next.Default = parsed.Default
			continue
		}
		for k, v := range parsed.Targets {
			next.Targets[k] = v
		}
	}
	return next, nil
}
