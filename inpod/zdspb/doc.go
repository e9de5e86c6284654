// Package zdspb is the Go code generated from proto/istio/zds/zds.proto (`make proto`): the ZDS
// messages istio-cni's node agent and ztunnel exchange, wire-compatible with istio-cni's
// package istio.workload.zds. Only doc.go is written by hand.
package zdspb
