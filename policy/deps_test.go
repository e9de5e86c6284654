package policy

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDeps keeps the package free of sockets and of the rest of ztunnel: policy is a pure
// function of its inputs. Only the imports listed here are allowed in non-test files.
func TestDeps(t *testing.T) {
	allowed := map[string]bool{
		"cmp": true, "encoding/json": true, "errors": true, "fmt": true, "hash/maphash": true,
		"log/slog": true, "math/bits": true, "net/netip": true, "slices": true, "strings": true,
		"bytes": true,
		"github.com/ztunnel-go/ztunnel/tls/identity": true,
		"gopkg.in/yaml.v3":                           true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowed[path] {
				t.Errorf("%s imports %q, which policy must not depend on", name, path)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}
