package image

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testVersion is stamped into the binary the tests build, as the Makefile does.
const testVersion = "v0.0.0-imagetest"

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ztunnelBinary builds the main module's ztunnel as `make build` does (static, -trimpath,
// version from -ldflags) once per test run, and returns its path.
func ztunnelBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs("../../..")
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "ztunnel-image-test"); buildErr != nil {
			return
		}
		buildPath = filepath.Join(buildDir, "ztunnel")
		cmd := exec.Command("go", "build", "-trimpath",
			"-ldflags", "-s -w -X github.com/ztunnel-go/ztunnel/version.Version="+testVersion,
			"-o", buildPath, "./cmd/ztunnel")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/ztunnel in %s: %w\n%s", root, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// testCABundle writes a PEM bundle with one self-signed certificate.
func testCABundle(t *testing.T) (string, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "image test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// entry is one tar entry of the layer.
type entry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	modTime  time.Time
}

// readLayer lists the single layer of img and returns its entries and file contents.
func readLayer(t *testing.T, img v1.Image, oci bool) ([]entry, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1 on an empty base", len(layers))
	}
	if mt, err := layers[0].MediaType(); oci && (err != nil || mt != types.OCILayer) {
		t.Errorf("layer media type = %v, %v; want %v", mt, err, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var entries []entry
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.UTC()})
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	return entries, files
}

// loadOutputs writes img in both output forms and reads each back from disk.
func loadOutputs(t *testing.T, img v1.Image, ref string) map[string]v1.Image {
	t.Helper()
	dir := t.TempDir()
	ociDir, tarFile := filepath.Join(dir, "oci"), filepath.Join(dir, "image.tar")
	if err := WriteLayout(ociDir, img, ref); err != nil {
		t.Fatal(err)
	}
	if err := WriteTarball(tarFile, img, ref); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != ref {
		t.Fatalf("OCI index = %+v, want one manifest named %s", im.Manifests, ref)
	}
	fromOCI, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(tarFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]v1.Image{"oci layout": fromOCI, "tarball": fromTar}
}

func TestImage(t *testing.T) {
	bin := ztunnelBinary(t)
	caPath, caPEM := testCABundle(t)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	dirs := func(names ...string) []entry {
		var out []entry
		for _, n := range names {
			out = append(out, entry{n, tar.TypeDir, 0o755, 0, 0, created})
		}
		return out
	}
	binEntries := append(dirs("usr/", "usr/local/", "usr/local/bin/"),
		entry{"usr/local/bin/ztunnel", tar.TypeReg, 0o755, 0, 0, created})
	caEntries := append(dirs("etc/", "etc/ssl/", "etc/ssl/certs/"),
		entry{"etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, 0, 0, created})

	tests := []struct {
		name        string
		caCerts     string
		wantEntries []entry
	}{
		{"binary only", "", binEntries},
		{"with CA bundle", caPath, append(append([]entry(nil), binEntries...), caEntries...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := Build(Options{Binary: bin, CACerts: tt.caCerts, Version: testVersion,
				Revision: "abc123", Source: "https://example/ztunnel-go", Created: created})
			if err != nil {
				t.Fatal(err)
			}
			const ref = "registry.example/ztunnel-go/ztunnel:" + testVersion
			for form, got := range loadOutputs(t, img, ref) {
				t.Run(form, func(t *testing.T) {
					checkImage(t, got, form == "oci layout", tt.wantEntries, created, bin, caPEM)
				})
			}
		})
	}
}

// checkImage checks the config and the layer of an image read back from disk, and runs the
// binary taken from the layer. The docker-load tarball has Docker's media types by its nature;
// oci says to check for OCI's.
func checkImage(t *testing.T, img v1.Image, oci bool, wantEntries []entry, created time.Time, bin string, caPEM []byte) {
	t.Helper()
	if mt, err := img.MediaType(); oci && (err != nil || mt != types.OCIManifestSchema1) {
		t.Errorf("manifest media type = %v, %v; want %v", mt, err, types.OCIManifestSchema1)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"os", cf.OS, "linux"},
		{"architecture", cf.Architecture, runtime.GOARCH},
		{"created", cf.Created.UTC(), created},
		{"entrypoint", cf.Config.Entrypoint, []string{"/usr/local/bin/ztunnel"}},
		{"cmd", cf.Config.Cmd, []string{"proxy", "ztunnel"}},
		{"user", cf.Config.User, "0"},
		{"working dir", cf.Config.WorkingDir, "/"},
		{"env", cf.Config.Env, []string{"PATH=/usr/local/bin"}},
		{"labels", cf.Config.Labels, map[string]string{
			LabelTitle: "ztunnel-go", LabelVersion: testVersion, LabelRevision: "abc123",
			LabelSource: "https://example/ztunnel-go"}},
		{"exposed ports", len(cf.Config.ExposedPorts), 0},
		{"history", len(cf.History), 1},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("config %s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}

	entries, files := readLayer(t, img, oci)
	if !reflect.DeepEqual(entries, wantEntries) {
		t.Errorf("layer entries:\n got %+v\nwant %+v", entries, wantEntries)
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files["usr/local/bin/ztunnel"], want) {
		t.Errorf("binary in the layer differs from %s", bin)
	}
	if ca, ok := files["etc/ssl/certs/ca-certificates.crt"]; ok && !bytes.Equal(ca, caPEM) {
		t.Errorf("CA bundle in the layer differs from the input")
	}

	// The binary from the layer runs on its own: static, with the version stamped in.
	exe := filepath.Join(t.TempDir(), "ztunnel")
	if err := os.WriteFile(exe, files["usr/local/bin/ztunnel"], 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "version")
	cmd.Env = []string{} // nothing from the test's environment
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ztunnel version: %v\n%s", err, out)
	}
	if want := `version.BuildInfo{Version:"` + testVersion + `"`; !strings.HasPrefix(string(out), want) {
		t.Errorf("ztunnel version printed %q, want it to start with %q", out, want)
	}
}

func TestBuildReproducible(t *testing.T) {
	bin := ztunnelBinary(t)
	digest := func(opts Options) v1.Hash {
		t.Helper()
		img, err := Build(opts)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := digest(Options{Binary: bin, Version: "v1"})
	if b := digest(Options{Binary: bin, Version: "v1"}); a != b {
		t.Errorf("same inputs gave digests %s and %s", a, b)
	}
	if c := digest(Options{Binary: bin, Version: "v1", Created: time.Unix(1e9, 0)}); a == c {
		t.Errorf("a different creation time gave the same digest %s", a)
	}
	if d := digest(Options{Binary: bin, Version: "v2"}); a == d {
		t.Errorf("a different version label gave the same digest %s", a)
	}
}

func TestBuildErrors(t *testing.T) {
	bin := ztunnelBinary(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "bundle")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no binary", Options{}, "no binary given"},
		{"missing binary", Options{Binary: filepath.Join(dir, "absent")}, "read binary"},
		{"not ELF", Options{Binary: text}, "not an ELF executable"},
		{"missing CA bundle", Options{Binary: bin, CACerts: filepath.Join(dir, "absent")}, "read CA bundle"},
		{"CA bundle without PEM", Options{Binary: bin, CACerts: notPEM}, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestStaticArch(t *testing.T) {
	bin := ztunnelBinary(t)
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr string
	}{
		{"static ztunnel", bin, runtime.GOARCH, ""},
		// A dynamically linked system program, when the machine has one.
		{"dynamic", "/bin/ls", "", "dynamically linked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(tt.path)
			if err != nil {
				t.Skipf("no %s here: %v", tt.path, err)
			}
			defer f.Close()
			got, err := StaticArch(f)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("StaticArch = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("StaticArch = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func FuzzStaticArch(f *testing.F) {
	// Seeds: this test binary's first bytes (a real ELF header and program headers), and
	// near misses.
	if exe, err := os.Executable(); err == nil {
		if b, err := os.ReadFile(exe); err == nil {
			f.Add(b[:min(len(b), 4096)])
		}
	}
	f.Add([]byte("\x7fELF"))
	f.Add([]byte("#!/bin/sh\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		arch, err := StaticArch(bytes.NewReader(data))
		if err == nil && arch == "" {
			t.Fatal("no error and no architecture")
		}
	})
}

// TestDockerfileAgrees checks that deploy/Dockerfile, which no test here can build (there is no
// container engine), describes the image Build makes.
func TestDockerfileAgrees(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for line := range strings.SplitSeq(string(data), "\n") {
		for _, kw := range []string{"FROM scratch", "COPY --from=build", "ENV ", "WORKDIR ", "USER ", "ENTRYPOINT ", "CMD "} {
			if strings.HasPrefix(line, kw) {
				got = append(got, line)
			}
		}
	}
	want := []string{
		"WORKDIR /src", // the build stage
		"FROM scratch",
		"COPY --from=build /etc/ssl/certs/ca-certificates.crt " + CACertsPath,
		"COPY --from=build /src/bin/ztunnel " + BinaryPath,
		"ENV PATH=/usr/local/bin",
		"WORKDIR /",
		"USER 0",
		`ENTRYPOINT ["` + BinaryPath + `"]`,
		`CMD ["` + strings.Join(Args, `", "`) + `"]`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Dockerfile lines:\n got %q\nwant %q", got, want)
	}
}
