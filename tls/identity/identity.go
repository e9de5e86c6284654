// Package identity models Istio workload identities: SPIFFE IDs of the form
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
//
// Parsing is strict: only that exact shape is accepted, with the character sets
// of the SPIFFE ID specification, so that an ID has exactly one textual form and
// Parse(id.String()) == id for every valid id.
package identity

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// Scheme is the URI scheme of a SPIFFE ID, with its separator.
const Scheme = "spiffe://"

// MaxLength is the longest SPIFFE ID accepted, in bytes (the SPIFFE
// specification's limit for a URI SAN).
const MaxLength = 2048

// ErrInvalid is wrapped by every error Parse and Validate return.
var ErrInvalid = errors.New("invalid SPIFFE ID")

// ID is a workload identity. The zero ID means "no identity".
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String returns the SPIFFE form spiffe://<td>/ns/<ns>/sa/<sa>. It does not
// validate; use Validate for that.
func (id ID) String() string {
	return Scheme + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// Validate reports whether every part of id is non-empty and made of allowed
// characters, so that id.String() parses back to id.
func (id ID) Validate() error {
	if err := checkTrustDomain(id.TrustDomain); err != nil {
		return err
	}
	if err := checkSegment("namespace", id.Namespace); err != nil {
		return err
	}
	if err := checkSegment("service account", id.ServiceAccount); err != nil {
		return err
	}
	if n := len(Scheme) + len(id.TrustDomain) + len("/ns/") + len(id.Namespace) + len("/sa/") + len(id.ServiceAccount); n > MaxLength {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLength)
	}
	return nil
}

// Parse parses s as spiffe://<td>/ns/<ns>/sa/<sa>. The scheme must be lower
// case "spiffe", the path exactly ns/<namespace>/sa/<service account>, and
// every part non-empty. The trust domain may hold ASCII letters, digits, '.',
// '-' and '_'; namespace and service account the same (but not "." or "..").
// There is no port, user info, query or fragment.
func Parse(s string) (ID, error) {
	if len(s) > MaxLength {
		return ID{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLength)
	}
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return ID{}, fmt.Errorf("%w %q: scheme must be %q", ErrInvalid, s, Scheme)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" {
		return ID{}, fmt.Errorf("%w %q: want spiffe://<trust domain>/ns/<namespace>/sa/<service account>", ErrInvalid, s)
	}
	id := ID{TrustDomain: parts[0], Namespace: parts[2], ServiceAccount: parts[4]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("%q: %w", s, err)
	}
	return id, nil
}

func checkTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("%w: empty trust domain", ErrInvalid)
	}
	for i := 0; i < len(td); i++ {
		if !allowed(td[i]) {
			return fmt.Errorf("%w: trust domain %q: character %q not allowed", ErrInvalid, td, td[i])
		}
	}
	return nil
}

func checkSegment(what, v string) error {
	if v == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	if v == "." || v == ".." {
		return fmt.Errorf("%w: %s %q not allowed", ErrInvalid, what, v)
	}
	for i := 0; i < len(v); i++ {
		if !allowed(v[i]) {
			return fmt.Errorf("%w: %s %q: character %q not allowed", ErrInvalid, what, v, v[i])
		}
	}
	return nil
}

func allowed(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_'
}

// oidSubjectAltName is id-ce-subjectAltName (RFC 5280 4.2.1.6).
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// FromCertificate returns the identity named by the single SPIFFE URI SAN of c.
// Other SANs (DNS names, non-SPIFFE URIs) are ignored. It is an error if c has
// no SPIFFE URI SAN, more than one, or one that Parse rejects. The SAN is read
// from the raw extension, so the URI is checked exactly as the issuer wrote it.
func FromCertificate(c *x509.Certificate) (ID, error) {
	if c == nil {
		return ID{}, errors.New("no certificate")
	}
	var found string
	n := 0
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		uris, err := SANURIs(ext.Value)
		if err != nil {
			return ID{}, err
		}
		for _, u := range uris {
			if !hasSpiffeScheme(u) {
				continue
			}
			n++
			found = u
		}
	}
	switch n {
	case 0:
		return ID{}, errors.New("certificate has no spiffe:// URI SAN")
	case 1:
		return Parse(found)
	default:
		return ID{}, fmt.Errorf("certificate has %d spiffe:// URI SANs, want exactly one", n)
	}
}

// hasSpiffeScheme reports whether u's scheme is spiffe, in any case, so that a
// "SPIFFE://" SAN counts towards "several" instead of being silently skipped.
func hasSpiffeScheme(u string) bool {
	return len(u) >= len("spiffe:") && strings.EqualFold(u[:len("spiffe:")], "spiffe:")
}

// SANURIs returns the uniformResourceIdentifier entries of a DER
// SubjectAltName extension value, as written (no URL parsing).
func SANURIs(der []byte) ([]string, error) {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return nil, fmt.Errorf("malformed subjectAltName extension: %w", err)
	}
	if len(rest) != 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, errors.New("malformed subjectAltName extension")
	}
	var uris []string
	for names := seq.Bytes; len(names) > 0; {
		var name asn1.RawValue
		names, err = asn1.Unmarshal(names, &name)
		if err != nil {
			return nil, fmt.Errorf("malformed subjectAltName entry: %w", err)
		}
		// GeneralName uniformResourceIdentifier is [6] IMPLICIT IA5String.
		if name.Class == asn1.ClassContextSpecific && name.Tag == 6 {
			if name.IsCompound {
				return nil, errors.New("malformed subjectAltName URI")
			}
			uris = append(uris, string(name.Bytes))
		}
	}
	return uris, nil
}
