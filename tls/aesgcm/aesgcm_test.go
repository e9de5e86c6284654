package aesgcm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"testing"
)

// TestGenericFallback runs what New returns where the assembly cannot run,
// on every machine.
func TestGenericFallback(t *testing.T) {
	forceGeneric = true
	defer func() { forceGeneric = false }()
	key := bytes.Repeat([]byte{5}, 16)
	a, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	if typ := fmt.Sprintf("%T", a); typ == "*aesgcm.gcmAsm" {
		t.Fatal("New returned the assembly while it is switched off")
	}
	if got := Implementation(); got != "crypto/cipher" {
		t.Fatalf("Implementation() = %q while the assembly is switched off", got)
	}
	block, _ := aes.NewCipher(key)
	std, _ := cipher.NewGCM(block)
	nonce, pt := make([]byte, NonceSize), []byte("fallback")
	if !bytes.Equal(a.Seal(nil, nonce, pt, nil), std.Seal(nil, nonce, pt, nil)) {
		t.Fatal("the fallback is not crypto/cipher's GCM")
	}
	for _, n := range []int{0, 15, 17, 33} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Fatalf("New accepted a %d-byte key", n)
		}
	}
}
