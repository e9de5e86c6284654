// Package record is a TLS 1.3 record layer for connections whose handshake
// crypto/tls ran: Handshake captures the application traffic secrets through
// the key log and returns a Conn that seals and opens records itself, with
// fewer copies and system calls than a *tls.Conn (see Conn). It knows
// nothing of HBONE; the HBONE engine uses a Conn's buffered reads and writes
// when it is given one.
package record
