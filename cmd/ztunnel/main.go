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
