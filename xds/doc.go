// Package xds holds the sources of configuration that fill the workload
// store. Today that is the static local config (LOCAL_XDS_PATH or
// LOCAL_XDS): ztunnel's YAML format with top-level workloads, policies and
// services, decoded strictly (an unknown field is an error naming the field
// and its line), converted by pure functions into a workload.Update, and
// applied all-or-nothing with Store.Replace. LocalSource watches the file
// and re-applies it on every change, keeping the last good configuration
// when an edit is invalid. The delta xDS client will live here too.
package xds
