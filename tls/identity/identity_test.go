package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    ID
		wantErr string // substring of the error; "" means success
	}{
		{in: "spiffe://cluster.local/ns/default/sa/bookinfo", want: ID{"cluster.local", "default", "bookinfo"}},
		{in: "spiffe://td/ns/n/sa/s", want: ID{"td", "n", "s"}},
		{in: "spiffe://Example-TD_1/ns/a.b-c/sa/x_y", want: ID{"Example-TD_1", "a.b-c", "x_y"}},
		{in: "", wantErr: "scheme"},
		{in: "cluster.local/ns/a/sa/b", wantErr: "scheme"},
		{in: "SPIFFE://cluster.local/ns/a/sa/b", wantErr: "scheme"},
		{in: "https://cluster.local/ns/a/sa/b", wantErr: "scheme"},
		{in: "spiffe:/cluster.local/ns/a/sa/b", wantErr: "scheme"},
		{in: " spiffe://cluster.local/ns/a/sa/b", wantErr: "scheme"},
		{in: "spiffe://", wantErr: "want spiffe://"},
		{in: "spiffe://cluster.local", wantErr: "want spiffe://"},
		{in: "spiffe://cluster.local/ns/a", wantErr: "want spiffe://"},
		{in: "spiffe://cluster.local/ns/a/sa", wantErr: "want spiffe://"},
		{in: "spiffe://cluster.local/ns/a/sa/b/", wantErr: "want spiffe://"},
		{in: "spiffe://cluster.local/ns/a/sa/b/c", wantErr: "want spiffe://"},
		{in: "spiffe://cluster.local/sa/a/ns/b", wantErr: "want spiffe://"},
		{in: "spiffe://cluster.local/NS/a/SA/b", wantErr: "want spiffe://"},
		{in: "spiffe://cluster.local//ns/a/sa/b", wantErr: "want spiffe://"},
		{in: "spiffe:///ns/a/sa/b", wantErr: "empty trust domain"},
		{in: "spiffe://cluster.local/ns//sa/b", wantErr: "empty namespace"},
		{in: "spiffe://cluster.local/ns/a/sa/", wantErr: "empty service account"},
		{in: "spiffe://cluster.local/ns/./sa/b", wantErr: "not allowed"},
		{in: "spiffe://cluster.local/ns/a/sa/..", wantErr: "not allowed"},
		{in: "spiffe://user@cluster.local/ns/a/sa/b", wantErr: "trust domain"},
		{in: "spiffe://cluster.local:8080/ns/a/sa/b", wantErr: "trust domain"},
		{in: "spiffe://cluster.local/ns/a/sa/b?x=1", wantErr: "service account"},
		{in: "spiffe://cluster.local/ns/a/sa/b#frag", wantErr: "service account"},
		{in: "spiffe://cluster.local/ns/a%2F/sa/b", wantErr: "namespace"},
		{in: "spiffe://cluster.local/ns/a b/sa/b", wantErr: "namespace"},
		{in: "spiffe://cluster.local/ns/a/sa/b\n", wantErr: "service account"},
		{in: "spiffe://clüster/ns/a/sa/b", wantErr: "trust domain"},
		{in: "spiffe://" + strings.Repeat("a", MaxLength) + "/ns/a/sa/b", wantErr: "longer than"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("Parse(%q) error: %v", tt.in, err)
				continue
			}
			if got != tt.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("Parse(%q).String() = %q", tt.in, s)
			}
			continue
		}
		if err == nil {
			t.Errorf("Parse(%q) = %+v, want error containing %q", tt.in, got, tt.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Parse(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) error %v does not wrap ErrInvalid", tt.in, err)
		}
		if !got.IsZero() {
			t.Errorf("Parse(%q) returned non-zero ID %+v with an error", tt.in, got)
		}
	}
}

func TestStringAndIsZero(t *testing.T) {
	id := ID{"td", "ns1", "sa1"}
	if got, want := id.String(), "spiffe://td/ns/ns1/sa/sa1"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if id.IsZero() {
		t.Error("IsZero() = true for a non-zero ID")
	}
	if !(ID{}).IsZero() {
		t.Error("IsZero() = false for the zero ID")
	}
	if err := (ID{}).Validate(); err == nil {
		t.Error("Validate() of the zero ID succeeded")
	}
}

// sanExtension builds a raw subjectAltName extension value from GeneralNames
// given as (tag, value) pairs: tag 2 = dNSName, 6 = URI.
func sanExtension(t testing.TB, names ...asn1.RawValue) pkix.Extension {
	t.Helper()
	b, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Critical: true, Value: b}
}

func uri(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(s)}
}

func dns(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(s)}
}

func newCert(t testing.TB, exts ...pkix.Extension) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(1),
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFromCertificate(t *testing.T) {
	tests := []struct {
		name    string
		cert    *x509.Certificate
		want    ID
		wantErr string
	}{
		{name: "one spiffe URI", cert: newCert(t, sanExtension(t, uri("spiffe://td/ns/a/sa/b"))), want: ID{"td", "a", "b"}},
		{name: "spiffe among other SANs", cert: newCert(t, sanExtension(t, dns("x.example"), uri("https://x.example/"), uri("spiffe://td/ns/a/sa/b"))), want: ID{"td", "a", "b"}},
		{name: "no SAN", cert: newCert(t), wantErr: "no spiffe"},
		{name: "DNS only", cert: newCert(t, sanExtension(t, dns("x.example"))), wantErr: "no spiffe"},
		{name: "two spiffe URIs", cert: newCert(t, sanExtension(t, uri("spiffe://td/ns/a/sa/b"), uri("spiffe://td/ns/a/sa/c"))), wantErr: "2 spiffe"},
		{name: "upper case scheme counts", cert: newCert(t, sanExtension(t, uri("spiffe://td/ns/a/sa/b"), uri("SPIFFE://td/ns/a/sa/c"))), wantErr: "2 spiffe"},
		{name: "upper case scheme alone", cert: newCert(t, sanExtension(t, uri("SPIFFE://td/ns/a/sa/b"))), wantErr: "scheme"},
		{name: "malformed path", cert: newCert(t, sanExtension(t, uri("spiffe://td/a/b"))), wantErr: "want spiffe://"},
		{name: "nil", cert: nil, wantErr: "no certificate"},
	}
	for _, tt := range tests {
		got, err := FromCertificate(tt.cert)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: FromCertificate() = %+v, %v; want error containing %q", tt.name, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: FromCertificate() = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

func TestSANURIsMalformed(t *testing.T) {
	for _, in := range [][]byte{nil, {0x30}, {0x30, 0x03, 0x86, 0x05, 'a'}, {0x31, 0x00}, {0x30, 0x00, 0x00}} {
		if got, err := SANURIs(in); err == nil {
			t.Errorf("SANURIs(%x) = %q, want error", in, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"spiffe://cluster.local/ns/default/sa/default",
		"spiffe://td/ns/a/sa/b",
		"spiffe://td/ns/a/sa/b/c",
		"spiffe:///ns//sa/",
		"SPIFFE://td/ns/a/sa/b",
		"spiffe://td/ns/../sa/b",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if !id.IsZero() {
				t.Fatalf("Parse(%q) returned %+v with error %v", s, id, err)
			}
			return
		}
		// Strict parsing means one textual form per ID.
		if got := id.String(); got != s {
			t.Fatalf("Parse(%q).String() = %q", s, got)
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("Parse(%q) = %+v, which does not validate: %v", s, id, err)
		}
		again, err := Parse(id.String())
		if err != nil || again != id {
			t.Fatalf("round trip of %+v: got %+v, %v", id, again, err)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("cluster.local", "default", "bookinfo-productpage")
	f.Add("td", "ns", "sa")
	f.Add("td", "a/sa/b", "c")
	f.Fuzz(func(t *testing.T, td, ns, sa string) {
		id := ID{td, ns, sa}
		got, err := Parse(id.String())
		if id.Validate() != nil {
			if err == nil {
				t.Fatalf("Parse(%q) accepted an ID that does not validate: %+v", id.String(), got)
			}
			return
		}
		if err != nil || got != id {
			t.Fatalf("Parse(%q) = %+v, %v; want %+v", id.String(), got, err, id)
		}
	})
}

func FuzzSANURIs(f *testing.F) {
	f.Add([]byte{0x30, 0x00})
	b, _ := asn1.Marshal([]asn1.RawValue{uri("spiffe://td/ns/a/sa/b"), dns("x")})
	f.Add(b)
	f.Fuzz(func(t *testing.T, der []byte) {
		uris, err := SANURIs(der)
		if err != nil {
			return
		}
		// Whatever was accepted must survive re-encoding as URIs.
		names := make([]asn1.RawValue, len(uris))
		for i, u := range uris {
			names[i] = uri(u)
		}
		enc, err := asn1.Marshal(names)
		if err != nil {
			t.Fatal(err)
		}
		again, err := SANURIs(enc)
		if err != nil || len(again) != len(uris) {
			t.Fatalf("re-encoded SAN: %q, %v; want %q", again, err, uris)
		}
	})
}
