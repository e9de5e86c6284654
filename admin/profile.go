package admin

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

// profileMu serializes CPU profiles taken through the admin port: the runtime has one
// profiler, and profile sets its rate before runtime/pprof starts it.
var profileMu sync.Mutex

// defaultProfileHz is runtime/pprof's sampling rate, and ztunnel's default.
const defaultProfileHz = 100

// profile serves /debug/pprof/profile with ztunnel's parameters: seconds (1-300, default 10)
// and frequency in Hz (1-1000, default 100). A value out of range or not a number is a 400
// that says which, in ztunnel's words. The answer is a gzipped pprof protobuf, as Go's handler
// (which this replaces: it defaults to 30 s and has no frequency) and ztunnel's give.
//
// runtime/pprof always asks for 100 Hz. For another frequency the runtime's profiler is
// started at that rate first; runtime/pprof's own request then fails, the runtime prints
// "runtime: cannot set cpu profile rate until previous profile has finished." on stderr, and
// the profile records the rate it ran at.
func profile(w http.ResponseWriter, r *http.Request) {
	seconds, ok := intParam(r, "seconds", 10, 1, 300)
	if !ok {
		http.Error(w, "invalid seconds value; expected 1-300", http.StatusBadRequest)
		return
	}
	hz, ok := intParam(r, "frequency", defaultProfileHz, 1, 1000)
	if !ok {
		http.Error(w, "invalid frequency value; expected 1-1000", http.StatusBadRequest)
		return
	}
	if !profileMu.TryLock() {
		http.Error(w, "a CPU profile is already being taken", http.StatusConflict)
		return
	}
	defer profileMu.Unlock()
	if hz != defaultProfileHz {
		runtime.SetCPUProfileRate(hz)
	}
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		// Another user of runtime/pprof in this process (none in ztunnel) has the profiler,
		// and so the rate set above did not take.
		http.Error(w, fmt.Sprintf("could not start the CPU profile: %v", err), http.StatusInternalServerError)
		return
	}
	t := time.NewTimer(time.Duration(seconds) * time.Second)
	select {
	case <-t.C:
	case <-r.Context().Done(): // the client went away: stop at once
		t.Stop()
	}
	pprof.StopCPUProfile()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="profile"`)
	w.Write(buf.Bytes())
}

// intParam returns query parameter name of r as an integer in [lo, hi], def when absent; ok is
// false for a value that is not such an integer.
func intParam(r *http.Request, name string, def, lo, hi int) (v int, ok bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	v, err := strconv.Atoi(s)
	return v, err == nil && lo <= v && v <= hi
}
