// Command ztunnel is Istio's node proxy for ambient mode. It reads its configuration from the
// environment (ztunnel's variable names), then runs the proxy until SIGTERM, SIGINT or
// POST /quitquitquit. `ztunnel version` prints the version.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/ztunnel-go/ztunnel/app"
	"github.com/ztunnel-go/ztunnel/config"
	"github.com/ztunnel-go/ztunnel/version"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	switch {
	case len(args) == 0, len(args) == 1 && args[0] == "proxy", len(args) == 2 && args[0] == "proxy" && args[1] == "ztunnel":
	case len(args) == 1 && (args[0] == "version" || args[0] == "--version"):
		fmt.Printf("ztunnel version %s (git %s, %s, %s)\n", version.Version, version.GitRevision, version.GoVersion(), version.BuildStatus)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "usage: ztunnel [proxy [ztunnel]] | version\n")
		return 2
	}
	cfg, err := config.FromEnv(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ztunnel: invalid configuration:\n%v\n", err)
		return 1
	}
	if cfg.WorkerThreadsSet {
		runtime.GOMAXPROCS(cfg.WorkerThreads)
	}
	setGCPercent(os.LookupEnv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := app.New(cfg, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ztunnel: %v\n", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ztunnel: %v\n", err)
		return 1
	}
	return 0
}

// defaultGCPercent is the collector's target ztunnel runs with when the operator leaves GOGC
// unset: a collection starts once the heap has grown by half its live size, not by all of it
// (Go's default, 100). ztunnel's data path allocates nothing, so the collector's work grows
// only with connections opened and closed. Measured on S5 and S3 (benchmarks/README.md, "Idle
// memory and the collector's target"): about a fifth less resident memory per idle
// connection, read one second after a burst of them and again after the idle trim, for the
// collector's share of a new connection's CPU going from about 0.5% to 1.2%.
const defaultGCPercent = 50

// setGCPercent sets the collector's target to defaultGCPercent unless GOGC is set, which the
// Go runtime has already applied (GOGC=off included).
func setGCPercent(lookup func(string) (string, bool)) {
	if _, set := lookup("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
}
