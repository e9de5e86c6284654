// Package benchmarks holds the Go benchmarks that span packages (the HBONE pool and server
// together) and, in README.md, how to run the standalone harness (cmd/ztunnel-bench) and the
// latest figures it measured. The benchmarks of a single package live beside its code.
package benchmarks
