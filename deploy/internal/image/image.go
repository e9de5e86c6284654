// Package image builds the ztunnel container image without a container engine or a registry:
// one layer holding the static ztunnel binary (and, when given, the CA bundle that Go's
// crypto/x509 reads for the SYSTEM roots) on an empty base, with the configuration Istio's
// DaemonSet expects (entrypoint /usr/local/bin/ztunnel, arguments "proxy ztunnel", user 0,
// working directory / for ztunnel's relative default paths). The result is written as an OCI
// image layout, a `docker load` tarball, or both.
//
// The build is reproducible: every timestamp is Options.Created, so the same inputs give the
// same image digest.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths inside the image.
const (
	// BinaryPath is the entrypoint.
	BinaryPath = "/usr/local/bin/ztunnel"
	// CACertsPath is where Go's crypto/x509 looks first for the system roots on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
)

// Options says what goes into the image.
type Options struct {
	// Binary is the path of a statically linked Linux ztunnel executable. Required.
	Binary string
	// CACerts is the path of a PEM bundle copied to CACertsPath; "" leaves it out, and then
	// XDS_ROOT_CA=SYSTEM or CA_ROOT_CA=SYSTEM find no roots.
	CACerts string
	// Version and Revision label the image (org.opencontainers.image.version and .revision);
	// "" leaves the label out.
	Version, Revision string
	// Source labels the image with its source repository; "" leaves the label out.
	Source string
	// Created is the time of every file and of the image; zero means the Unix epoch.
	Created time.Time
}

// Labels of the image config.
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
)

// Args are the default arguments, the ones Istio's DaemonSet passes.
var Args = []string{"proxy", "ztunnel"}

// Build assembles the image.
func Build(opts Options) (v1.Image, error) {
	if opts.Binary == "" {
		return nil, errors.New("no binary given")
	}
	bin, err := os.ReadFile(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("read binary: %w", err)
	}
	arch, err := StaticArch(bytes.NewReader(bin))
	if err != nil {
		return nil, fmt.Errorf("binary %s: %w", opts.Binary, err)
	}
	files := []file{{name: BinaryPath, mode: 0o755, data: bin}}
	if opts.CACerts != "" {
		pem, err := os.ReadFile(opts.CACerts)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		if !bytes.Contains(pem, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("CA bundle %s: no PEM certificate", opts.CACerts)
		}
		files = append(files, file{name: CACertsPath, mode: 0o644, data: pem})
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC().Truncate(time.Second)

	tarData, err := layerTar(files, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarData)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}

	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "ztunnel-go mkimage",
			Comment:   "static ztunnel binary",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Created = v1.Time{Time: created}
	cf.Config.Entrypoint = []string{BinaryPath}
	cf.Config.Cmd = append([]string(nil), Args...)
	cf.Config.User = "0"
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/bin"}
	cf.Config.Labels = map[string]string{LabelTitle: "ztunnel-go"}
	for k, v := range map[string]string{LabelVersion: opts.Version, LabelRevision: opts.Revision, LabelSource: opts.Source} {
		if v != "" {
			cf.Config.Labels[k] = v
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// file is one regular file of the layer, at an absolute path.
type file struct {
	name string
	mode int64
	data []byte
}

// layerTar writes the layer: each file with its parent directories before it (0755, root),
// all owned by root and dated created.
func layerTar(files []file, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	var addDir func(dir string) error
	addDir = func(dir string) error {
		if dir == "." || dir == "/" || seen[dir] {
			return nil
		}
		if err := addDir(path.Dir(dir)); err != nil {
			return err
		}
		seen[dir] = true
		return tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: dir[1:] + "/", Mode: 0o755, ModTime: created, Format: tar.FormatPAX,
		})
	}
	for _, f := range files {
		if err := addDir(path.Dir(f.name)); err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
		hdr := &tar.Header{
			Typeflag: tar.TypeReg, Name: f.name[1:], Mode: f.mode, Size: int64(len(f.data)),
			ModTime: created, Format: tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// StaticArch reads an executable's ELF header and returns its OCI architecture name
// ("amd64", "arm64", ...). It fails for anything but a statically linked Linux executable:
// the image has no dynamic loader or C library.
func StaticArch(r io.ReaderAt) (string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", errors.New("dynamically linked (has a program interpreter); build with CGO_ENABLED=0")
		}
	}
	if f.Type == elf.ET_DYN && f.Entry == 0 {
		return "", errors.New("a shared library, not an executable")
	}
	arch, ok := archs[f.Machine]
	if !ok {
		return "", fmt.Errorf("unsupported machine %v", f.Machine)
	}
	return arch, nil
}

// archs maps ELF machines to OCI architecture names.
var archs = map[elf.Machine]string{
	elf.EM_X86_64:  "amd64",
	elf.EM_AARCH64: "arm64",
	elf.EM_386:     "386",
	elf.EM_ARM:     "arm",
	elf.EM_PPC64:   "ppc64le",
	elf.EM_S390:    "s390x",
	elf.EM_RISCV:   "riscv64",
}

// WriteLayout writes img into an OCI image layout at dir (created, or replaced if it
// exists), annotated with ref as org.opencontainers.image.ref.name.
func WriteLayout(dir string, img v1.Image, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("replace %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	var opts []layout.Option
	if ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": ref,
		}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return nil
}

// WriteTarball writes img as a tarball that `docker load` and `podman load` accept, tagged
// ref (for example "ghcr.io/ztunnel-go/ztunnel:v0.1.0").
func WriteTarball(file string, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}
