package version

import "testing"

// TestString: `ztunnel version` prints ztunnel's BuildInfo line, with GoVersion where ztunnel has
// its Rust toolchain's.
func TestString(t *testing.T) {
	b := BuildInfo{Version: "1.2.3", GitRevision: "abc", GoVersion: "go1.26.8", BuildProfile: "release",
		BuildStatus: "Clean", IstioVersion: "1.30.1", CryptoProvider: "tls-go"}
	want := `version.BuildInfo{Version:"1.2.3", GitRevision:"abc", GoVersion:"go1.26.8", BuildProfile:"release", BuildStatus:"Clean", IstioVersion:"1.30.1", CryptoProvider:"tls-go"}`
	if got := b.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	if got := Info("1.30.1"); got.Version != Version || got.GitRevision != GitRevision || got.IstioVersion != "1.30.1" || got.GoVersion == "" {
		t.Errorf("Info = %+v", got)
	}
}
