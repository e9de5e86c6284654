package main

import (
	"strings"
	"testing"

	"github.com/ztunnel-go/ztunnel/deploy/internal/image"
)

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name     string
		opts     image.Options
		oci, tar string
		epoch    string
		want     string
	}{
		{"no output", image.Options{Binary: "x"}, "", "", "", "nothing to write"},
		{"bad epoch", image.Options{Binary: "x"}, t.TempDir(), "", "yesterday", `-created "yesterday"`},
		{"no binary", image.Options{}, t.TempDir(), "", "", "no binary given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.opts, tt.oci, tt.tar, "example/ztunnel:test", tt.epoch)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
