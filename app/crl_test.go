package app

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCRLPath: CRL_PATH gives the certificate manager its revocation lists; a file that does not
// parse stops start-up with the variable's name, one that does not exist yet does not.
func TestCRLPath(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("-----BEGIN X509 CRL-----\nbm90IGEgY3Js\n-----END X509 CRL-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(loopbackConfig(t, map[string]string{"CRL_PATH": bad}, 0), io.Discard); err == nil || !strings.Contains(err.Error(), "CRL_PATH") {
		t.Errorf("New with a malformed list: %v, want an error naming CRL_PATH", err)
	}
	a, err := New(loopbackConfig(t, map[string]string{"CRL_PATH": filepath.Join(dir, "later.pem")}, 0), io.Discard)
	if err != nil {
		t.Fatalf("New with a list still to come: %v", err)
	}
	defer a.certs.Close()
	if a.crl == nil {
		t.Error("no revocation lists for the certificate manager")
	}
}
