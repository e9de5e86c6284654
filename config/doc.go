// Package config turns the process environment into a [Config], using the
// variable names, defaults and parsing rules of Istio's ztunnel, so that an
// operator can swap the ztunnel image without touching the DaemonSet.
//
// [FromEnv] reads every variable at once and reports every malformed one
// together (errors.Join of [*VarError] values, each naming its variable), so
// cmd/ztunnel can print one complete message and exit before any port is
// opened. The package also owns the two small grammars shared with the rest
// of the program: ztunnel's duration syntax ([ParseDuration]) and RUST_LOG
// level strings ([ParseLogLevel]), the latter reused by the admin /logging
// endpoint at run time.
//
// config imports nothing else from this module and opens no sockets. Apart
// from the environment it reads only what ztunnel reads while configuring
// itself: Istio's mesh config file, and whether the default token and root
// certificate files exist.
package config
