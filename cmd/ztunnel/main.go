// Command ztunnel is Istio's node proxy for ambient mode. It reads its configuration from the
// environment (ztunnel's variable names), then runs the proxy until SIGTERM, SIGINT or
// POST /quitquitquit. `ztunnel version` prints the version, `ztunnel help` the commands.
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
	"github.com/ztunnel-go/ztunnel/internal/fdtable"
	"github.com/ztunnel-go/ztunnel/internal/gctarget"
	"github.com/ztunnel-go/ztunnel/version"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	// As ztunnel, only the first argument counts: Istio's DaemonSet passes "proxy ztunnel".
	var cmd string
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "", "proxy":
	case "version", "--version":
		fmt.Println(version.Info(config.IstioVersion(os.LookupEnv)))
		return 0
	case "help", "--help", "-h":
		fmt.Print(help())
		return 0
	default:
		fmt.Fprintf(os.Stderr, "unknown command: %s\n%s", cmd, help())
		return 1
	}
	cfg, err := config.FromEnv(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ztunnel: invalid configuration:\n%v\n", err)
		return 1
	}
	if cfg.WorkerThreadsSet {
		runtime.GOMAXPROCS(cfg.WorkerThreads)
	}
	// Best effort: without the reservation the kernel grows the table as descriptors open,
	// which works, with a stall at each doubling.
	_ = fdtable.Reserve(fdReserve)
	startGCTarget(os.LookupEnv) // runs for the life of the process
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

// help is what `ztunnel help` prints.
func help() string {
	return fmt.Sprintf(`ztunnel-go, Istio's ambient node proxy: %s

usage: ztunnel [command]
  proxy     run the proxy (the default; later arguments are ignored)
  version   print the build and the Istio version it runs as
  help      print this text
`, version.Info(config.IstioVersion(os.LookupEnv)))
}

// fdReserve is the descriptor table ztunnel reserves at start-up (internal/fdtable): 16,384
// slots, 128 KiB of kernel memory. A connection carried over pooled HBONE holds one descriptor
// in the ztunnel at each end (its pooled connections, listeners and network namespaces add a
// few), one relayed in plain TCP two, so the kernel first has to grow the table past about ten
// thousand connections; each doubling from there stalls the opening of descriptors once, for a
// few milliseconds. Capped by the soft RLIMIT_NOFILE. Measured in benchmarks/README.md, "The
// descriptor table, sized at start-up (thirty-sixth session)".
const fdReserve = 16 << 10

// The collector's target ztunnel runs with when the operator leaves GOGC unset: after each
// collection, the heap may grow by gcBudget bytes before the next one starts, as a percentage of
// what the collection scanned between gcMinPercent and gcMaxPercent (internal/gctarget). A
// ztunnel with few connections runs at 50 (a collection once the heap has grown by half its
// live size; Go's default is 100), one holding ten thousand at 10. ztunnel's data path
// allocates nothing, so the collector works only while connections open and close. Measured in
// benchmarks/README.md: "Idle memory and the collector's target" chose 50 for every heap,
// and "The collector's headroom, bounded (thirty-third session)" the bound on the headroom.
const (
	gcBudget     = 1 << 20
	gcMinPercent = 10
	gcMaxPercent = 50
)

// startGCTarget starts the collector's tuning (see gcBudget) unless GOGC is set, which the Go
// runtime has already applied (GOGC=off included) and which then stays as the operator set it.
// It returns the Tuner, or nil when GOGC is set.
func startGCTarget(lookup func(string) (string, bool)) *gctarget.Tuner {
	if _, set := lookup("GOGC"); set {
		return nil
	}
	t := &gctarget.Tuner{Budget: gcBudget, Min: gcMinPercent, Max: gcMaxPercent}
	t.Start()
	return t
}
