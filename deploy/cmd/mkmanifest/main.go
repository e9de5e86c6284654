// Command mkmanifest renders the ztunnel chart with its default values into the plain YAML
// manifest for people without Helm (manifests/ztunnel.yaml), after checking that every object
// decodes strictly into Kubernetes API types. Run it from the deploy directory:
//
//	go run ./cmd/mkmanifest            # rewrite manifests/ztunnel.yaml
//	go run ./cmd/mkmanifest -o -       # print to standard output
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ztunnel-go/ztunnel/deploy/internal/render"
)

func main() {
	chart := flag.String("chart", "charts/ztunnel", "chart directory")
	out := flag.String("o", "manifests/ztunnel.yaml", `output file, "-" for standard output`)
	flag.Parse()
	if err := run(*chart, *out); err != nil {
		fmt.Fprintf(os.Stderr, "mkmanifest: %v\n", err)
		os.Exit(1)
	}
}

func run(chart, out string) error {
	text, err := render.Manifest(chart)
	if err != nil {
		return err
	}
	if out == "-" {
		_, err = os.Stdout.WriteString(text)
		return err
	}
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}
