// Package fuzz holds the fuzzing infrastructure of ztunnel-go: cross-package
// harnesses and the runner.
//
// Fuzz targets live beside the parser they exercise (go test -fuzz runs
// them where they are); this folder adds what belongs to no single package:
//
//   - FuzzTunnel (tunnel_test.go) runs a real hbone.ClientConn and
//     hbone.Server against each other through a relay that corrupts or cuts
//     either byte stream at fuzzer-chosen offsets: both HTTP/2 parsers face
//     damaged real encodings at once, and every goroutine must return.
//   - TestEveryFuzzTargetHasSeeds (seeds_test.go) scans the module and fails
//     for a Fuzz function that neither calls f.Add nor has a
//     testdata/fuzz/<Name> corpus.
//
// The harnesses beside the parsers include hbone.FuzzServerConn and
// hbone.FuzzClientConn (raw byte streams fed to a Server and a ClientConn),
// the local-config YAML, xDS conversions, ZDS messages, SPIFFE IDs, PEM
// material, policy evaluation, sockaddr parsing and the configuration
// parsers. `go test -list '^Fuzz' ./...` lists them all.
//
// # Running
//
// run.sh finds every Fuzz target of the main module and fuzzes each in turn
// for FUZZTIME (go allows one -fuzz target per invocation):
//
//	make fuzz FUZZTIME=1m        # every target for a minute
//	make fuzz-ci                 # every target for FUZZTIME_CI (2 s), as CI does
//	FUZZPKGS=./hbone fuzz/run.sh # the targets of some packages only
//	FUZZSKIP='^FuzzX$' make fuzz # leave targets out (a known, reported crasher)
//	FUZZMINIMIZE=1m make fuzz    # shrink each new input for up to a minute (go's default)
//
// run.sh fuzzes with the Go toolchain FUZZ_TOOLCHAIN (go1.27.1 by default,
// which the go command fetches through the module proxy; empty for the go
// command's own): Go 1.26's fuzz coordinator can fail a target as its
// -fuzztime ends, with no failing input (golang/go#75804). Without that
// toolchain it fuzzes with the go command's own and runs such a target again.
//
// A worker that finds a new input shrinks it before it fuzzes again, for up
// to -fuzzminimizetime, and go's default for that is a minute. The targets
// that run a connection per input find several new inputs a second at
// first, so with that default they spend most of a short run shrinking: in
// 20 s from the seeds alone, FuzzServerConn ran 62,000 and 105,000 inputs and
// kept 10 and 63 new ones, and with 3 s it ran 215,000 and 297,000 and kept 85
// and 111 (FuzzClientConn: 183,000 and 181,000 inputs against 250,000 and
// 186,000). GODEBUG=fuzzdebug=1 shows single inputs of FuzzServerConn taking
// 10-12 s to shrink, while the run counts no new executions. So run.sh
// shrinks for at most FUZZMINIMIZE (3 s); a crasher is written as far as it
// was shrunk by then.
//
// Targets of the main module only (deploy/ is a module of its own). It
// stops at the first failure and prints the crasher's path. go test
// writes crashers to <package>/testdata/fuzz/<FuzzName>/<hash>; keep them
// there (commit them) as regression cases: a plain `go test` of the package
// runs every file of testdata/fuzz as a seed, so the bug stays fixed.
package fuzz
