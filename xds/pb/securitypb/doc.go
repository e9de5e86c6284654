// Package securitypb is the generated Go code of proto/istio/security/authorization.proto, our
// wire-compatible copy of istiod's istio.security messages (Authorization and its parts).
// Regenerate with `make proto`.
package securitypb
