// Package version holds the build's version, stamped by the linker
// (-ldflags "-X github.com/ztunnel-go/ztunnel/version.Version=...").
package version

import "runtime"

// Set by -ldflags at build time; the defaults describe an unstamped development build.
var (
	Version     = "0.0.0-dev"
	GitRevision = "unknown"
	BuildStatus = "Modified"
	// IstioVersion is the Istio release whose ztunnel this build is compatible with.
	IstioVersion = "1.28"
)

// GoVersion is the toolchain that built the binary.
func GoVersion() string { return runtime.Version() }
