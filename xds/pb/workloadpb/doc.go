// Package workloadpb is the generated Go code of proto/istio/workload/workload.proto, our
// wire-compatible copy of istiod's istio.workload messages (Address, Workload, Service).
// Regenerate with `make proto`.
package workloadpb
