// Package policy is ztunnel's L4 AuthorizationPolicy model and engine.
//
// The model ([Authorization], [Match], [StringMatch], [ServiceAccountMatch]) has the shape of
// ztunnel's serde encoding, so the `policies:` section of a local-config YAML file decodes
// straight into it and /config_dump prints it in the JSON shape istioctl expects.
//
// The engine is a [Set]: an immutable, indexed collection of policies that any number of
// goroutines may read while a writer derives the next Set with [Set.With]. [Set.Evaluate]
// decides one inbound connection with Istio's order: dry-run policies are only reported, a
// matching DENY rejects, no applicable ALLOW allows, a matching ALLOW allows, anything else is
// rejected.
//
// The package knows nothing of sockets or workloads: callers pass plain values ([Target],
// [Conn]) and get a [Decision] back.
package policy
