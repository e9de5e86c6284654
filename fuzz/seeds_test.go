package fuzz

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryFuzzTargetHasSeeds fails for a Fuzz target of the module that
// has no seed corpus: no f.Add call (directly, or by handing f to a helper)
// and no testdata/fuzz/<Name> directory. Without seeds from real encodings
// a short CI run explores little beyond the empty input.
func TestEveryFuzzTargetHasSeeds(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(name, "_test.go") {
			return nil
		}
		file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Fuzz") || fn.Body == nil {
				continue
			}
			param := fuzzParam(fn)
			if param == "" {
				continue
			}
			found++
			corpus := filepath.Join(filepath.Dir(path), "testdata", "fuzz", fn.Name.Name)
			if _, err := os.Stat(corpus); err == nil || addsSeeds(fn.Body, param) {
				continue
			}
			rel, _ := filepath.Rel(root, path)
			t.Errorf("%s: %s has no seeds (no %s.Add and no testdata/fuzz/%s)", rel, fn.Name.Name, param, fn.Name.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("no Fuzz targets found: is the module root wrong?")
	}
}

// fuzzParam returns the name of fn's *testing.F parameter, or "".
func fuzzParam(fn *ast.FuncDecl) string {
	ps := fn.Type.Params.List
	if len(ps) != 1 || len(ps[0].Names) != 1 {
		return ""
	}
	star, ok := ps[0].Type.(*ast.StarExpr)
	if !ok {
		return ""
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "F" {
		return ""
	}
	return ps[0].Names[0].Name
}

// addsSeeds reports whether body calls param.Add or passes param to a
// function (a seeding helper).
func addsSeeds(body *ast.BlockStmt, param string) bool {
	seeded := false
	ast.Inspect(body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || seeded {
			return !seeded
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Add" {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == param {
				seeded = true
			}
		}
		for _, a := range call.Args {
			if id, ok := a.(*ast.Ident); ok && id.Name == param {
				seeded = true
			}
		}
		return !seeded
	})
	return seeded
}
