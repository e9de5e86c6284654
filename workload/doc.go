// Package workload holds ztunnel-go's model of the mesh — workloads,
// services with their endpoints, and (by reference) authorization policies —
// and the Store that the data path reads.
//
// # Model
//
// Workload, Service, Endpoint, GatewayAddress and friends follow the serde
// shape of ztunnel's Rust types field for field: camelCase YAML and JSON
// names, enums spelled as ztunnel spells them, "network/ip" and
// "namespace/hostname" strings for NetworkAddress and NamespacedHostname.
// The local-config YAML (package xds) decodes straight into them and
// /config_dump encodes them as JSON in the shape istioctl reads.
//
// # Store
//
// Readers call Store.Snapshot and get an immutable *Snapshot: every lookup
// is lock-free and allocation-free. One writer at a time applies an Update,
// which builds the next snapshot from the current one and publishes it with
// an atomic pointer swap; subscribers are then woken.
//
// Copying whole maps on every update would make an incremental update
// O(n). Instead every index is a persistent hash map of 256 shards (each a
// plain Go map) behind a pointer to a shard table. The next version copies
// the 2 KiB shard table and clones only the shards the update writes to,
// once per update. One workload changing in a store of 10,000 thus copies a
// handful of ~40-entry shards, while a full push clones each shard once and
// then fills it in place. A HAMT would bound the copy even tighter but costs
// several pointer hops per lookup on the data path; plain sharded Go maps
// keep lookups at one hash and one map probe. Services with CIDR VIPs are
// rare and kept in a small longest-prefix index rebuilt when one of them
// changes.
//
// Endpoints are kept consistent with workloads: a workload listing a
// service in Services contributes an Endpoint (with its ServicePorts map
// and health status) to that service; removing or replacing the workload
// takes it away. Contributions are remembered per service key even while
// the service itself is absent, so a service that is added, removed and
// re-added finds its endpoints again. Each Update rebuilds each affected
// service once, whatever the number of endpoint changes.
//
// Every resource is validated alone: Apply applies the good ones and
// returns one *ResourceError per rejected resource, joined.
package workload
