// Package version holds the build's version, stamped by the linker
// (-ldflags "-X github.com/ztunnel-go/ztunnel/version.Version=...").
package version

import (
	"fmt"
	"runtime"
)

// Set by -ldflags at build time; the defaults describe an unstamped development build.
var (
	Version     = "0.0.0-dev"
	GitRevision = "unknown"
	BuildStatus = "Modified"
)

// GoVersion is the toolchain that built the binary.
func GoVersion() string { return runtime.Version() }

// BuildInfo describes the running binary: `ztunnel version` prints it and /config_dump's
// "version" section is its JSON, both in the shape of ztunnel's (with GoVersion where ztunnel
// has its Rust toolchain's).
type BuildInfo struct {
	Version      string `json:"version"`
	GitRevision  string `json:"gitRevision"`
	GoVersion    string `json:"goVersion"`
	BuildProfile string `json:"buildProfile"`
	BuildStatus  string `json:"buildStatus"`
	// IstioVersion is the Istio release the process is deployed as, from the environment
	// (ISTIO_META_ISTIO_VERSION, which Istio's ztunnel image sets), not a property of the
	// build; "unknown" when unset.
	IstioVersion   string `json:"istioVersion"`
	CryptoProvider string `json:"cryptoProvider"`
}

// Info is this build's BuildInfo, deployed as istioVersion.
func Info(istioVersion string) BuildInfo {
	return BuildInfo{
		Version: Version, GitRevision: GitRevision, GoVersion: GoVersion(), BuildProfile: "release",
		BuildStatus: BuildStatus, IstioVersion: istioVersion, CryptoProvider: "tls-go",
	}
}

// String is the text ztunnel prints for `ztunnel version` and logs at start-up.
func (b BuildInfo) String() string {
	return fmt.Sprintf(`version.BuildInfo{Version:"%s", GitRevision:"%s", GoVersion:"%s", BuildProfile:"%s", BuildStatus:"%s", IstioVersion:"%s", CryptoProvider:"%s"}`,
		b.Version, b.GitRevision, b.GoVersion, b.BuildProfile, b.BuildStatus, b.IstioVersion, b.CryptoProvider)
}
