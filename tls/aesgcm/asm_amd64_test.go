package aesgcm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"unsafe"
)

// requireAsm skips, saying why, where the CPU cannot run the assembly: the
// tests below would only compare crypto/cipher with itself.
func requireAsm(t testing.TB) {
	t.Helper()
	if !Accelerated() {
		t.Skip("SKIPPED: this CPU lacks VAES or VPCLMULQDQ (with AVX2 or AVX-512); New returns crypto/cipher's GCM here")
	}
}

// impls are the two assembly implementations: asm_amd64.s on 512-bit
// registers and avx2_amd64.s on 256-bit ones.
var impls = []struct {
	name  string
	has   bool
	wide  bool
	lacks string
}{
	{"avx512", hasAVX512, true, "AVX-512 BW/VL, VAES or VPCLMULQDQ"},
	{"avx2", hasAVX2, false, "AVX2, VAES or VPCLMULQDQ"},
}

// paths runs f as a subtest for each implementation, with New returning
// it; one the CPU cannot run is skipped, saying so.
func paths(t *testing.T, f func(t *testing.T)) {
	requireAsm(t)
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			if !im.has {
				t.Skipf("SKIPPED: this CPU lacks %s", im.lacks)
			}
			defer func(old bool) { useAVX512 = old }(useAVX512)
			useAVX512 = im.wide
			f(t)
		})
	}
}

func pair(t testing.TB, key []byte) (ours, std cipher.AEAD) {
	t.Helper()
	ours, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := ours.(*gcmAsm); !ok || g.wide != useAVX512 {
		t.Fatalf("New returned %T (wide %v), not the assembly asked for", ours, ok && g.wide)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	std, err = cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return ours, std
}

func random(r *rand.ChaCha8, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

// check seals with both, compares, and opens each one's output with the
// other.
func check(t testing.TB, ours, std cipher.AEAD, nonce, pt, aad []byte) {
	t.Helper()
	want := std.Seal(nil, nonce, pt, aad)
	got := ours.Seal(nil, nonce, pt, aad)
	if !bytes.Equal(got, want) {
		t.Fatalf("Seal(len %d, aad %d) differs from crypto/cipher's:\n got %x\nwant %x", len(pt), len(aad), got, want)
	}
	back, err := ours.Open(nil, nonce, want, aad)
	if err != nil || !bytes.Equal(back, pt) {
		t.Fatalf("Open(len %d, aad %d) of crypto/cipher's output: %v, plaintext equal %v", len(pt), len(aad), err, bytes.Equal(back, pt))
	}
}

var lengths = func() []int {
	var l []int
	for n := 0; n <= 600; n++ {
		l = append(l, n)
	}
	return append(l, 1023, 1024, 1025, 4095, 4096, 16383, 16384, 16385, 16384+17+256)
}()

// TestImplementation checks that Implementation names the assembly New
// returns, for each one the CPU runs.
func TestImplementation(t *testing.T) {
	paths(t, func(t *testing.T) {
		a, err := New(make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		want := "vaes-avx2"
		if a.(*gcmAsm).wide {
			want = "vaes-avx512"
		}
		if got := Implementation(); got != want {
			t.Fatalf("Implementation() = %q, New returned %s", got, want)
		}
	})
}

func TestMatchesCryptoCipher(t *testing.T) { paths(t, testMatchesCryptoCipher) }

func testMatchesCryptoCipher(t *testing.T) {
	r := rand.NewChaCha8([32]byte{1})
	for _, keyLen := range []int{16, 24, 32} {
		ours, std := pair(t, random(r, keyLen))
		for _, n := range lengths {
			for _, a := range []int{0, 5, 13} {
				check(t, ours, std, random(r, NonceSize), random(r, n), random(r, a))
			}
		}
		for a := 0; a <= 600; a++ {
			check(t, ours, std, random(r, NonceSize), random(r, 37), random(r, a))
		}
	}
}

// TestLayout holds gcmAsm and gcmState to the offsets asm_amd64.s uses.
func TestLayout(t *testing.T) {
	var g gcmAsm
	var st gcmState
	for _, f := range []struct {
		name      string
		off, want uintptr
	}{
		{"gcmAsm.htab (HTAB)", unsafe.Offsetof(g.htab), 240},
		{"gcmAsm.rounds (ROUNDS)", unsafe.Offsetof(g.rounds), 736},
		{"gcmAsm.htabK (HTABK)", unsafe.Offsetof(g.htabK), 744},
		{"gcmState.y (STY)", unsafe.Offsetof(st.y), 0},
		{"gcmState.ctr (STCTR)", unsafe.Offsetof(st.ctr), 16},
		{"gcmState.ej0 (STEJ0)", unsafe.Offsetof(st.ej0), 32},
		{"gcmState.tag (STTAG)", unsafe.Offsetof(st.tag), 48},
		{"gcmState.n (STN)", unsafe.Offsetof(st.n), 64},
		{"gcmState.aadLen (STAADLEN)", unsafe.Offsetof(st.aadLen), 72},
	} {
		if f.off != f.want {
			t.Errorf("%s at %d, the assembly has %d", f.name, f.off, f.want)
		}
	}
}

// sealRecordWant is SealRecord's definition: the record's content copied
// together and sealed by crypto/cipher.
func sealRecordWant(std cipher.AEAD, head, body []byte, typ byte, nonce, aad []byte) []byte {
	pt := append(append(append([]byte(nil), head...), body...), typ)
	return std.Seal(nil, nonce, pt, aad)
}

// TestSealRecord compares SealRecord, for heads of every length modulo 16
// and bodies on both sides of minGather, with crypto/cipher sealing the
// same content copied together; crypto/cipher's GCM through SealRecord
// (the fallback) must give the same.
func TestSealRecord(t *testing.T) { paths(t, testSealRecord) }

func testSealRecord(t *testing.T) {
	r := rand.NewChaCha8([32]byte{6})
	var bodies []int
	for n := 0; n <= 300; n++ {
		bodies = append(bodies, n)
	}
	bodies = append(bodies, 511, 512, 513, 1000, 16383-9, 16383, 16384+33)
	for _, keyLen := range []int{16, 24, 32} {
		ours, std := pair(t, random(r, keyLen))
		for _, m := range []int{0, 1, 5, 9, 15, 16, 17, 31, 32, 33, 100, 255, 256, 257} {
			for _, n := range bodies {
				nonce, aad := random(r, NonceSize), random(r, 5)
				head, body := random(r, m), random(r, n)
				typ := byte(r.Uint64())
				want := sealRecordWant(std, head, body, typ, nonce, aad)
				keep := bytes.Clone(body)
				for _, a := range []cipher.AEAD{ours, std} {
					out := make([]byte, m+n+1+TagSize+7) // room to spare
					copy(out, head)
					got := SealRecord(a, out, m, body, typ, nonce, aad)
					if !bytes.Equal(got, want) {
						t.Fatalf("%T: SealRecord(key %d, head %d, body %d) differs:\n got %x\nwant %x", a, keyLen, m, n, got, want)
					}
					if !bytes.Equal(out[len(got):], make([]byte, 7)) {
						t.Fatalf("%T: SealRecord(head %d, body %d) wrote past the record", a, m, n)
					}
				}
				if !bytes.Equal(body, keep) {
					t.Fatalf("SealRecord(head %d, body %d) changed body", m, n)
				}
			}
		}
	}
}

func TestSealRecordOverlapPanics(t *testing.T) { paths(t, testSealRecordOverlapPanics) }

func testSealRecordOverlapPanics(t *testing.T) {
	ours, _ := pair(t, make([]byte, 16))
	buf := make([]byte, 2000)
	for _, a := range []int{0, 100, 10 + minGather + 1 + TagSize - 1} { // out is buf[:10+minGather+1+TagSize]
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("SealRecord with body at out[%d:] did not panic", a)
				}
			}()
			SealRecord(ours, buf, 10, buf[a:a+minGather], 23, make([]byte, NonceSize), nil)
		}()
	}
}

// TestHashKeyPowers checks the powers setHashKey computes with mulAsm
// against mul, the Go model: H^(k+1) must be H^k·H for every stored power.
func TestHashKeyPowers(t *testing.T) {
	g := &gcmAsm{}
	h := [16]byte{0x66, 0xe9, 0x4b, 0xd4, 0xef, 0x8a, 0x2c, 0x3b, 0x88, 0x4c, 0xfa, 0x59, 0xca, 0x34, 0x2b, 0x2e}
	g.setHashKey(&h)
	power := func(k int) elem {
		b := g.htab[(16-k)*16:]
		return elem{hi: binary.LittleEndian.Uint64(b[8:]), lo: binary.LittleEndian.Uint64(b)}
	}
	// mul(a, b) is a·b·x^-1·x = a·b when b is stored times x^-1; the
	// powers are all stored that way, so mul(H^k', H') = H^(k+1)'.
	for k := 1; k < 16; k++ {
		if got, want := mul(power(k), power(1)), power(k+1); got != want {
			t.Fatalf("H^%d: got %x want %x", k+1, got, want)
		}
		// Multiplication commutes.
		if a, b := mul(power(k), power(2)), mul(power(2), power(k)); a != b {
			t.Fatalf("mul is not commutative at k=%d", k)
		}
	}
	if tail := g.htab[16*16:]; !bytes.Equal(tail, make([]byte, len(tail))) {
		t.Fatal("htab's padding after H^1 is not zero")
	}
}

// TestTamper flips every bit of the ciphertext, the tag and the additional
// data in turn: each Open must fail and leave dst zero.
func TestTamper(t *testing.T) { paths(t, testTamper) }

func testTamper(t *testing.T) {
	r := rand.NewChaCha8([32]byte{2})
	for _, keyLen := range []int{16, 32} {
		ours, _ := pair(t, random(r, keyLen))
		nonce, pt, aad := random(r, NonceSize), random(r, 70), random(r, 5)
		ct := ours.Seal(nil, nonce, pt, aad)
		for i := range 8 * (len(ct) + len(aad)) {
			c, a := bytes.Clone(ct), bytes.Clone(aad)
			if i < 8*len(c) {
				c[i/8] ^= 1 << (i % 8)
			} else {
				j := i - 8*len(c)
				a[j/8] ^= 1 << (j % 8)
			}
			dst := make([]byte, 0, len(pt))
			if out, err := ours.Open(dst, nonce, c, a); err == nil || out != nil {
				t.Fatalf("bit %d flipped: Open succeeded", i)
			}
			if !bytes.Equal(dst[:len(pt)], make([]byte, len(pt))) {
				t.Fatalf("bit %d flipped: plaintext left in dst", i)
			}
		}
		if _, err := ours.Open(nil, nonce, ct[:TagSize-1], aad); err == nil {
			t.Fatal("Open of a ciphertext shorter than the tag succeeded")
		}
		wrong := bytes.Clone(nonce)
		wrong[11] ^= 1
		if _, err := ours.Open(nil, wrong, ct, aad); err == nil {
			t.Fatal("Open under another nonce succeeded")
		}
	}
}

func TestInPlaceAndAppend(t *testing.T) { paths(t, testInPlaceAndAppend) }

func testInPlaceAndAppend(t *testing.T) {
	r := rand.NewChaCha8([32]byte{3})
	ours, std := pair(t, random(r, 16))
	nonce, aad := random(r, NonceSize), random(r, 5)
	pt := random(r, 1000)
	want := std.Seal(nil, nonce, pt, aad)

	buf := make([]byte, len(pt), len(pt)+TagSize)
	copy(buf, pt)
	sealed := ours.Seal(buf[:0], nonce, buf, aad)
	if !bytes.Equal(sealed, want) {
		t.Fatal("in-place Seal differs")
	}
	if got, err := ours.Open(sealed[:0], nonce, sealed, aad); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("in-place Open: %v", err)
	}
	prefix := []byte("header")
	got := ours.Seal(bytes.Clone(prefix), nonce, pt, aad)
	if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], want) {
		t.Fatal("Seal appending to dst differs")
	}
}

func TestInexactOverlapPanics(t *testing.T) { paths(t, testInexactOverlapPanics) }

func testInexactOverlapPanics(t *testing.T) {
	ours, _ := pair(t, make([]byte, 16))
	buf := make([]byte, 100)
	defer func() {
		if recover() == nil {
			t.Fatal("Seal into a shifted copy of its input did not panic")
		}
	}()
	ours.Seal(buf[1:1], make([]byte, NonceSize), buf[:50], nil)
}

// TestGuardPage puts input, output and additional data against a page the
// process may not touch: the masked loads and stores must not reach it.
func TestGuardPage(t *testing.T) { paths(t, testGuardPage) }

func testGuardPage(t *testing.T) {
	page := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	if err := syscall.Mprotect(mem[page:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{4})
	ours, std := pair(t, random(r, 32))
	nonce := random(r, NonceSize)
	for n := 0; n <= 300+minGather; n++ {
		pt, aad := random(r, n), random(r, n%40)
		want := std.Seal(nil, nonce, pt, aad)

		// Plaintext and additional data end at the guard page.
		in := mem[page-n : page]
		copy(in, pt)
		got := ours.Seal(nil, nonce, in, aad)
		a := mem[page-len(aad) : page]
		copy(a, aad)
		if !bytes.Equal(got, want) || !bytes.Equal(ours.Seal(nil, nonce, pt, a), want) {
			t.Fatalf("n=%d: Seal next to the guard page differs", n)
		}
		// A record's body ends there, and so does the record.
		if n >= minGather {
			out := make([]byte, 9+n+1+TagSize) // the head is nine zeros
			copy(in, pt)                       // the aad check wrote over its end
			got := SealRecord(ours, out, 9, in, 23, nonce, aad)
			if !bytes.Equal(got, sealRecordWant(std, make([]byte, 9), pt, 23, nonce, aad)) {
				t.Fatalf("n=%d: SealRecord of a body next to the guard page differs", n)
			}
			rec := mem[page-len(got) : page]
			clear(rec[:9])
			if !bytes.Equal(SealRecord(ours, rec, 9, pt, 23, nonce, aad), got) {
				t.Fatalf("n=%d: SealRecord into the guard page's edge differs", n)
			}
		}
		// Sealed output and opened input end there.
		out := mem[page-n-TagSize : page-n-TagSize]
		ours.Seal(out, nonce, pt, aad)
		if !bytes.Equal(mem[page-n-TagSize:page], want) {
			t.Fatalf("n=%d: Seal into the guard page's edge differs", n)
		}
		back, err := ours.Open(nil, nonce, mem[page-n-TagSize:page], aad)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("n=%d: Open next to the guard page: %v", n, err)
		}
		// Opened output ends there.
		if _, err := ours.Open(mem[page-n:page-n], nonce, want, aad); err != nil || !bytes.Equal(mem[page-n:page], pt) {
			t.Fatalf("n=%d: Open into the guard page's edge: %v", n, err)
		}
	}
}

func TestNoAllocs(t *testing.T) { paths(t, testNoAllocs) }

func testNoAllocs(t *testing.T) {
	ours, _ := pair(t, make([]byte, 16))
	nonce, aad := make([]byte, NonceSize), make([]byte, 5)
	buf := make([]byte, 16384+TagSize)
	body := make([]byte, 16000)
	if n := testing.AllocsPerRun(100, func() {
		ct := ours.Seal(buf[:0], nonce, buf[:16384], aad)
		if _, err := ours.Open(ct[:0], nonce, ct, aad); err != nil {
			t.Fatal(err)
		}
		SealRecord(ours, buf, 9, body, 23, nonce, aad)
	}); n != 0 {
		t.Fatalf("Seal, Open and SealRecord allocate %v times", n)
	}
}

func FuzzMatchesCryptoCipher(f *testing.F) {
	f.Add(uint8(0), make([]byte, 32), make([]byte, 12), []byte("hdr"), []byte("hello"))
	f.Add(uint8(2), bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 12), []byte{}, bytes.Repeat([]byte{1}, 300))
	f.Fuzz(func(t *testing.T, sel uint8, key, nonce, aad, pt []byte) {
		requireAsm(t)
		keyLen := []int{16, 24, 32}[int(sel)%3]
		if len(key) < keyLen || len(nonce) < NonceSize {
			return
		}
		// Every implementation the CPU has, in turn.
		defer func(old bool) { useAVX512 = old }(useAVX512)
		for _, im := range impls {
			if !im.has {
				continue
			}
			useAVX512 = im.wide
			ours, std := pair(t, key[:keyLen])
			check(t, ours, std, nonce[:NonceSize], pt, aad)
			// The same bytes as a record: head pt[:m], body pt[m:], and sel
			// as the content type.
			m := int(sel) % (len(pt) + 1)
			out := make([]byte, len(pt)+1+TagSize)
			copy(out, pt[:m])
			if got, want := SealRecord(ours, out, m, pt[m:], sel, nonce[:NonceSize], aad),
				sealRecordWant(std, pt[:m], pt[m:], sel, nonce[:NonceSize], aad); !bytes.Equal(got, want) {
				t.Fatalf("SealRecord(head %d, body %d) differs from crypto/cipher's", m, len(pt)-m)
			}
			ct := ours.Seal(nil, nonce[:NonceSize], pt, aad)
			if len(ct) > 0 {
				ct[int(sel)%len(ct)] ^= 0x80
				if _, err := ours.Open(nil, nonce[:NonceSize], ct, aad); err == nil {
					t.Fatal("Open of a modified ciphertext succeeded")
				}
			}
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	for _, impl := range []string{"avx512", "avx2", "crypto-cipher"} {
		for _, n := range []int{64, 1350, 16384} {
			b.Run(fmt.Sprintf("%s/%d", impl, n), func(b *testing.B) {
				a := benchAEAD(b, impl)
				nonce, aad := make([]byte, NonceSize), make([]byte, 5)
				buf := make([]byte, n+TagSize)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					a.Seal(buf[:0], nonce, buf[:n], aad)
				}
			})
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, impl := range []string{"avx512", "avx2", "crypto-cipher"} {
		for _, n := range []int{64, 1350, 16384} {
			b.Run(fmt.Sprintf("%s/%d", impl, n), func(b *testing.B) {
				a := benchAEAD(b, impl)
				nonce, aad := make([]byte, NonceSize), make([]byte, 5)
				ct := a.Seal(nil, nonce, make([]byte, n), aad)
				out := make([]byte, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := a.Open(out[:0], nonce, ct, aad); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkNew(b *testing.B) {
	key := make([]byte, 16)
	b.Run("asm", func(b *testing.B) {
		requireAsm(b)
		b.ReportAllocs()
		for b.Loop() {
			New(key)
		}
	})
	b.Run("crypto-cipher", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			block, _ := aes.NewCipher(key)
			cipher.NewGCM(block)
		}
	})
}

// BenchmarkSealRecord seals a full TLS record whose content is a 9-byte
// HTTP/2 frame header already in the record and 16,374 bytes elsewhere, as
// the record layer does for a DATA frame: copied in and sealed in place
// (what it did before SealRecord), or read by the cipher where it is.
func BenchmarkSealRecord(b *testing.B) {
	const m, body = 9, 16384 - 9 - 1
	for _, impl := range []string{"copy-then-seal", "seal-record"} {
		b.Run(impl, func(b *testing.B) {
			a := benchAEAD(b, "")
			nonce, aad := make([]byte, NonceSize), make([]byte, 5)
			src, out := make([]byte, body), make([]byte, 16384+TagSize)
			b.SetBytes(body)
			b.ReportAllocs()
			for b.Loop() {
				if impl == "copy-then-seal" {
					copy(out[m:], src)
					out[m+body] = 23
					a.Seal(out[:0], nonce, out[:m+body+1], aad)
				} else {
					SealRecord(a, out, m, src, 23, nonce, aad)
				}
			}
		})
	}
}

// benchAEAD is the implementation named: "avx512", "avx2", "crypto-cipher",
// or "" for New's choice.
func benchAEAD(b *testing.B, impl string) cipher.AEAD {
	key := make([]byte, 16)
	if impl != "crypto-cipher" {
		requireAsm(b)
		for _, im := range impls {
			if im.name == impl {
				if !im.has {
					b.Skipf("SKIPPED: this CPU lacks %s", im.lacks)
				}
				defer func(old bool) { useAVX512 = old }(useAVX512)
				useAVX512 = im.wide
			}
		}
		a, _ := New(key)
		return a
	}
	block, _ := aes.NewCipher(key)
	a, _ := cipher.NewGCM(block)
	return a
}

// clmul is the 128-bit carry-less product of a and b, in constant time.
func clmul(a, b uint64) (hi, lo uint64) {
	for i := range 64 {
		m := -(b >> i & 1)
		lo ^= a << i & m
		if i > 0 {
			hi ^= a >> (64 - i) & m
		}
	}
	return hi, lo
}

// mul is the assembly's multiplication in Go, the model of mulAsm and of
// the main loop's hash: the 256-bit carry-less
// product of a and b, then two folding rounds by poly's high word, which
// reduce it modulo the GCM polynomial. With b stored times x^-1 the result
// is a·b.
func mul(a, b elem) elem {
	hh, hl := clmul(a.hi, b.hi)
	lh, ll := clmul(a.lo, b.lo)
	m1h, m1l := clmul(a.hi, b.lo)
	m2h, m2l := clmul(a.lo, b.hi)
	mh, ml := m1h^m2h, m1l^m2l
	// The product is hi:lo, hi = hh:hl ^ mid>>64, lo = lh:ll ^ mid<<64.
	hi := elem{hh, hl ^ mh}
	lo := elem{lh ^ ml, ll}
	for range 2 {
		th, tl := clmul(lo.lo, poly.hi)
		lo = elem{lo.lo ^ th, lo.hi ^ tl}
	}
	return elem{lo.hi ^ hi.hi, lo.lo ^ hi.lo}
}
