// Package xds holds the sources of configuration that fill the workload
// store.
//
// The static local config (LOCAL_XDS_PATH or LOCAL_XDS) is ztunnel's YAML
// format with top-level workloads, policies and services, decoded strictly
// (an unknown field is an error naming the field and its line), converted by
// pure functions into a workload.Update, and applied all-or-nothing with
// Store.Replace. LocalSource watches the file and re-applies it on every
// change, keeping the last good configuration when an edit is invalid.
//
// Client is the delta ADS client of istiod: it subscribes to
// istio.workload.Address and istio.security.Authorization, converts each
// resource with ConvertWorkload, ConvertService or ConvertAuthorization (one
// pure function per type, giving the same store values as the YAML path),
// applies each response as one Store.Apply, and ACKs it or NACKs it naming
// each rejected resource while the others apply. It reconnects with backoff,
// keeps the last configuration meanwhile, and resumes with
// initial_resource_versions. The protobuf types are in xds/pb.
package xds
