package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ztunnel-go/ztunnel/internal/promtext"
	"github.com/ztunnel-go/ztunnel/version"
)

// TestIstioVersion: the Istio version the process is deployed as (ISTIO_META_ISTIO_VERSION, else
// "unknown") is istio_build's tag and /config_dump's version.istioVersion, as in ztunnel; the
// build's own version stays in version.version.
func TestIstioVersion(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"set", map[string]string{"ISTIO_META_ISTIO_VERSION": "1.30.1"}, "1.30.1"},
		{"unset", nil, "unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := New(loopbackConfig(t, c.env, 0), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			adm := a.adminServer()

			metrics := get(t, adm.StatsHandler(), "/metrics")
			if got := promtext.Sum(metrics, "istio_build", `component="ztunnel"`, `tag="`+c.want+`"`); got != 1 {
				t.Errorf(`istio_build{component="ztunnel",tag=%q} = %v, want 1`, c.want, got)
			}

			var dump struct {
				Version version.BuildInfo `json:"version"`
			}
			if err := json.Unmarshal([]byte(get(t, adm.AdminHandler(), "/config_dump")), &dump); err != nil {
				t.Fatal(err)
			}
			if want := version.Info(c.want); dump.Version != want {
				t.Errorf("config_dump version = %+v, want %+v", dump.Version, want)
			}
		})
	}
}

func get(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
	}
	return rec.Body.String()
}
