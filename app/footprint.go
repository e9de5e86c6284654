package app

import (
	"log/slog"
	"runtime/debug"
	"time"
)

// releaseStartupMemory drops what start-up leaves resident and an idle proxy no longer needs.
// It runs once when the local config is in and the listeners are open, and once more when
// istiod's first push has been applied (the xDS readiness task). Neither step changes
// behaviour; both were decided by measurement (benchmarks/README.md, "Process footprint").
//
//   - The garbage of start-up. Loading a configuration (a YAML document tree, a full xDS push)
//     allocates several times the store it builds, and an idle proxy may not collect for
//     minutes (the runtime forces a GC every two minutes; its scavenger returns pages slowly).
//     One full collection that returns the freed pages to the kernel costs a few milliseconds.
//   - The executable's pages touched by package initialisation. Every linked package's init
//     (protobuf descriptor registries, gRPC, prometheus, crypto) faults in code and read-only
//     data once, and the kernel maps up to 64 KiB around each fault, so most of the image is
//     resident after start-up although the idle proxy runs a small part of it. pageOutImage
//     asks the kernel to reclaim those clean, file-backed pages; whatever runs later is faulted
//     back in from the file, as under memory pressure.
func releaseStartupMemory(log *slog.Logger) {
	start := time.Now()
	debug.FreeOSMemory()
	collected := time.Now()
	n, err := pageOutImage()
	if err != nil {
		// Kernels before 5.4 have no MADV_PAGEOUT; nothing else depends on it.
		log.Debug("could not page out the executable's start-up pages", "err", err)
	}
	log.Debug("released start-up memory", "gc", collected.Sub(start), "image_bytes_advised", n, "page_out", time.Since(collected))
}

// withRelease returns done followed by releaseStartupMemory: the xDS client calls it once, from
// its own goroutine, after the first push of both types.
func withRelease(done func(), log *slog.Logger) func() {
	return func() {
		done()
		releaseStartupMemory(log)
	}
}
