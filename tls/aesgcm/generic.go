//go:build !amd64

package aesgcm

import "crypto/cipher"

// forceGeneric exists for the tests; there is no assembly here.
var forceGeneric bool

// Accelerated reports whether New returns the assembly implementation.
func Accelerated() bool { return false }

// Implementation names what New returns here: always crypto/cipher's GCM.
func Implementation() string { return implStd }

func newAsm(key []byte, block cipher.Block) cipher.AEAD { panic("unreachable") }

func sealRecordAsm(a cipher.AEAD, out []byte, m int, body []byte, typ byte, nonce, aad []byte) bool {
	return false
}
