// Command mkimage builds the ztunnel container image from a static ztunnel binary, without a
// container engine or a registry (see package image), and writes it as an OCI image layout
// and/or a tarball for `docker load` / `podman load`. `make image` in the repository root runs
// it on bin/ztunnel.
//
//	go run ./cmd/mkimage -binary ../bin/ztunnel -version v0.1.0 \
//	    -oci ../bin/image -tar ../bin/ztunnel-image.tar -ref ghcr.io/ztunnel-go/ztunnel:v0.1.0
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ztunnel-go/ztunnel/deploy/internal/image"
)

func main() {
	var (
		opts     image.Options
		oci, tar string
		ref      string
		epoch    string
	)
	flag.StringVar(&opts.Binary, "binary", "", "static ztunnel executable (required)")
	flag.StringVar(&opts.CACerts, "ca-certs", "", "PEM bundle for "+image.CACertsPath+` ("" leaves it out)`)
	flag.StringVar(&opts.Version, "version", "", "version label")
	flag.StringVar(&opts.Revision, "revision", "", "git revision label")
	flag.StringVar(&opts.Source, "source", "https://github.com/ztunnel-go/ztunnel", "source repository label")
	flag.StringVar(&oci, "oci", "", "write an OCI image layout to this directory (replaced)")
	flag.StringVar(&tar, "tar", "", "write a docker-load tarball to this file")
	flag.StringVar(&ref, "ref", "ghcr.io/ztunnel-go/ztunnel:latest", "image reference recorded in the outputs")
	flag.StringVar(&epoch, "created", os.Getenv("SOURCE_DATE_EPOCH"), "image and file time, Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	flag.Parse()
	if err := run(opts, oci, tar, ref, epoch); err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: %v\n", err)
		os.Exit(1)
	}
}

func run(opts image.Options, oci, tar, ref, epoch string) error {
	if oci == "" && tar == "" {
		return errors.New("nothing to write: give -oci DIR and/or -tar FILE")
	}
	if epoch != "" {
		secs, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return fmt.Errorf("-created %q: %w", epoch, err)
		}
		opts.Created = time.Unix(secs, 0)
	}
	img, err := image.Build(opts)
	if err != nil {
		return err
	}
	if oci != "" {
		if err := image.WriteLayout(oci, img, ref); err != nil {
			return err
		}
	}
	if tar != "" {
		if err := image.WriteTarball(tar, img, ref); err != nil {
			return err
		}
	}
	d, err := img.Digest()
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	fmt.Printf("%s %s\n", ref, d)
	return nil
}
