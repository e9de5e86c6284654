// Package inpod is ztunnel's shared (in-pod) mode: a client of istio-cni's ZDS protocol that
// learns which pods of the node are in the mesh, receives each pod's network namespace as a file
// descriptor, and runs one proxy per pod whose sockets all live inside that pod's namespace.
//
// Pieces, by file:
//   - message.go: decoding one ZDS datagram (protobuf payload plus SCM_RIGHTS descriptors) into
//     a Request, and encoding the answers.
//   - conn_linux.go: the unix SOCK_SEQPACKET transport and the netns identity (device, inode).
//   - state.go: the pod state machine (snapshot, keep, add, del, pending retries, readiness).
//   - client.go: the connection loop (hello, read, act, ack or NACK, reconnect with backoff).
//   - pods.go: the ProxyFactory that builds a proxy.Proxy for a pod in its namespace.
//
// Ownership: a Client owns its connection, its state and every pod proxy it started; Run returns
// only after every proxy has drained. A pod's netns descriptor is owned by the state machine
// from the moment it is received, and closed after that pod's proxy has drained (or at once
// when the pod is not started).
package inpod
