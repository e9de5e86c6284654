// Package ztunnel_test holds repository-wide checks: the one-way layering of packages and a
// package doc comment on every package.
package ztunnel_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ztunnel-go/ztunnel/"

type pkgInfo struct {
	path    string
	doc     string
	code    bool     // has non-test Go files
	imports []string // only this module's packages, without the module prefix
}

func listPackages(t *testing.T) map[string]pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{len .GoFiles}}\t{{.Doc}}\t{{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkgInfo{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 4)
		if len(f) != 4 {
			t.Fatalf("unexpected go list line %q", line)
		}
		p := pkgInfo{path: strings.TrimPrefix(f[0], module), code: f[1] != "0", doc: f[2]}
		for _, imp := range strings.Fields(f[3]) {
			if strings.HasPrefix(imp, module) {
				p.imports = append(p.imports, strings.TrimPrefix(imp, module))
			}
		}
		pkgs[p.path] = p
	}
	return pkgs
}

// TestLayering keeps dependencies one-way (ARCHITECTURE.md): the model and control-plane
// packages know nothing of sockets, and the HBONE engine knows nothing of workloads.
func TestLayering(t *testing.T) {
	forbidden := map[string][]string{
		"config":       {"*"},
		"tls/identity": {"*"},
		"tls/record":   {"*"}, // but tls/aesgcm and internal/rawio, below
		"tls/aesgcm":   {"*"},
		"tls/certs":    {"netutil", "proxy", "hbone", "workload", "policy", "xds", "app", "admin"},
		"policy":       {"netutil", "proxy", "hbone", "workload", "xds", "app", "admin", "tls/certs"},
		"workload":     {"netutil", "proxy", "hbone", "xds", "app", "admin", "tls/certs"},
		"xds":          {"netutil", "proxy", "hbone", "app", "admin"},
		"hbone":        {"workload", "policy", "xds", "proxy", "tls/certs", "app", "admin", "config"},
		"netutil":      {"workload", "policy", "xds", "proxy", "hbone", "tls/certs", "app", "admin"},
		"proxy":        {"app", "admin", "xds", "config", "inpod", "dns"},
		"dns":          {"proxy", "hbone", "xds", "app", "admin", "inpod", "tls/certs"},
		"inpod":        {"app", "admin", "xds", "config"},
		"tls/caclient": {"proxy", "hbone", "workload", "policy", "xds", "app", "admin", "inpod", "dns", "netutil"},
	}
	// except lets a package that imports nothing of ours ("*") import these.
	except := map[string][]string{"tls/record": {"tls/aesgcm", "internal/rawio"}}
	pkgs := listPackages(t)
	for pkg, bad := range forbidden {
		p, ok := pkgs[pkg]
		if !ok {
			t.Errorf("package %s is missing", pkg)
			continue
		}
		for _, imp := range p.imports {
			for _, b := range bad {
				if b == "*" && slices.Contains(except[pkg], imp) {
					continue
				}
				if b == "*" || imp == b || strings.HasPrefix(imp, b+"/") {
					t.Errorf("%s imports %s, which the layering forbids", pkg, imp)
				}
			}
		}
	}
	for path, p := range pkgs {
		for _, imp := range p.imports {
			if imp == "app" && path != "cmd/ztunnel" && !strings.HasPrefix(path, "e2e") {
				t.Errorf("%s imports app; only cmd/ztunnel may", path)
			}
		}
	}
}

// TestPackageDocs requires a package comment on every package.
func TestPackageDocs(t *testing.T) {
	for path, p := range listPackages(t) {
		if p.code && strings.TrimSpace(p.doc) == "" {
			t.Errorf("package %s has no package doc comment", path)
		}
	}
}
