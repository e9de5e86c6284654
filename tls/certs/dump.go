package certs

import (
	"cmp"
	"crypto/x509"
	"encoding/base64"
	"maps"
	"slices"
	"time"
)

// CertDump is the state of one identity in /config_dump "certificates", in
// ztunnel's JSON shape.
type CertDump struct {
	Identity string `json:"identity"`
	// State is "Available", "Initializing" or "Unavailable: <error>".
	State string `json:"state"`
	// CertChain is the leaf and intermediates; empty unless Available.
	CertChain []CertEntry `json:"certChain"`
	// RootCerts is the trust bundle; empty unless Available.
	RootCerts []CertEntry `json:"rootCerts"`
}

// CertEntry describes one certificate of a CertDump.
type CertEntry struct {
	// PEM is the base64 (standard encoding) of the certificate's PEM text.
	PEM string `json:"pem"`
	// SerialNumber is the serial in decimal.
	SerialNumber string `json:"serialNumber"`
	// ValidFrom and ExpirationTime are RFC 3339 in UTC, to the second.
	ValidFrom      string `json:"validFrom"`
	ExpirationTime string `json:"expirationTime"`
}

// Dump describes every managed identity, sorted by identity.
func (m *Manager) Dump() []CertDump {
	entries := slices.Collect(maps.Values(*m.entries.Load()))

	now := m.now()
	out := make([]CertDump, 0, len(entries))
	for _, e := range entries {
		d := CertDump{Identity: e.id.String(), CertChain: []CertEntry{}, RootCerts: []CertEntry{}}
		c := e.cert.Load()
		switch {
		case c != nil && c.ValidAt(now):
			d.State = "Available"
			for _, x := range c.chain {
				d.CertChain = append(d.CertChain, dumpCert(x))
			}
			for _, x := range c.rootCerts {
				d.RootCerts = append(d.RootCerts, dumpCert(x))
			}
		case c == nil && !closed(e.first):
			d.State = "Initializing"
		default:
			d.State = "Unavailable: " + e.unavailable().Error()
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b CertDump) int { return cmp.Compare(a.Identity, b.Identity) })
	return out
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func dumpCert(c *x509.Certificate) CertEntry {
	return CertEntry{
		PEM:            base64.StdEncoding.EncodeToString([]byte(encodeCertPEM(c))),
		SerialNumber:   c.SerialNumber.String(),
		ValidFrom:      c.NotBefore.UTC().Format(time.RFC3339),
		ExpirationTime: c.NotAfter.UTC().Format(time.RFC3339),
	}
}
