package record

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// sealRecord appends one record of content type typ to wire, sealed as a
// peer whose write protection is d would seal it.
func sealRecord(wire []byte, d *direction, typ byte, content []byte) []byte {
	inner := append(append([]byte{}, content...), typ)
	hdr := []byte{typeAppData, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(hdr[3:], uint16(len(inner)+tagLen))
	wire = append(wire, hdr...)
	return d.aead.Seal(wire, d.nextNonce(), inner, hdr)
}

// FuzzRecords feeds a Conn well-sealed records of any content type and
// content: post-handshake messages of every kind and split, alerts, empty
// and oversized records. Whatever arrives, the Conn must not panic, must
// deliver exactly the application data that precedes the first record it
// refuses, and must end.
//
// Input: a sequence of [type, length hi, length lo, content...] records;
// the length is cut to what is left.
func FuzzRecords(f *testing.F) {
	f.Add([]byte{23, 0, 5, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{22, 0, 5, 24, 0, 0, 1, 1, 23, 0, 2, 'o', 'k'})                  // KeyUpdate, update_requested
	f.Add([]byte{22, 0, 5, 24, 0, 0, 1, 0, 23, 0, 2, 'o', 'k'})                  // KeyUpdate
	f.Add([]byte{22, 0, 2, 4, 0, 22, 0, 6, 0, 4, 1, 2, 3, 4, 23, 0, 1, 'x'})     // a ticket split over two records
	f.Add([]byte{22, 0, 6, 24, 0, 0, 1, 0, 23})                                  // data after KeyUpdate in its record
	f.Add([]byte{21, 0, 2, 1, 0, 23, 0, 1, 'x'})                                 // close_notify, then data
	f.Add([]byte{21, 0, 2, 2, 40})                                               // a fatal alert
	f.Add([]byte{23, 0, 0, 23, 0, 0, 23, 0, 0})                                  // empty records
	f.Add([]byte{20, 0, 1, 1})                                                   // change_cipher_spec, encrypted
	f.Add(append([]byte{23, 0x40, 0x01}, bytes.Repeat([]byte{'a'}, 1<<14+1)...)) // record_overflow
	f.Fuzz(fuzzRecords)
}

func fuzzRecords(t *testing.T, in []byte) {
	{
		s := suites[tls.TLS_AES_128_GCM_SHA256]
		ours, peer := net.Pipe()
		defer ours.Close()
		defer peer.Close()
		readKey, writeKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
		// What the Conn writes (KeyUpdate answers, alerts) is dropped: on a
		// pipe, with no socket buffer, it would wait for the peer to read.
		c, err := newConn(dropWrites{ours}, s, readKey, writeKey, false)
		if err != nil {
			t.Fatal(err)
		}
		var w direction
		if err := w.setSecret(s, readKey); err != nil {
			t.Fatal(err)
		}
		var wire, wantData []byte
		valid := true // every record so far is one the Conn must accept
		empty := 0    // empty records in a row (maxUseless)
		for len(in) >= 3 {
			typ, n := in[0], int(in[1])<<8|int(in[2])
			in = in[3:]
			n = min(n, len(in))
			content := in[:n]
			in = in[n:]
			wire = sealRecord(wire, &w, typ, content)
			if empty++; len(content) > 0 {
				empty = 0
			}
			if valid && typ == typeAppData && len(content) <= maxPlaintext && empty <= maxUseless {
				wantData = append(wantData, content...)
			} else {
				valid = false
			}
			if typ == typeHandshake && len(content) >= 5 && content[0] == hsKeyUpdate {
				// A well-formed KeyUpdate ending its record switches keys.
				if len(content) == 5 && content[1] == 0 && content[2] == 0 && content[3] == 1 && content[4] <= 1 {
					w.update()
				}
			}
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			peer.Write(wire) // ends early when ours is closed
			peer.Close()
		}()
		ours.SetDeadline(time.Now().Add(10 * time.Second))
		got, _ := io.ReadAll(c)
		ours.Close()
		wg.Wait()
		// The data of the records before the first one the generator
		// cannot vouch for always arrives; after it, only what the Conn
		// accepted (a ticket, say) may follow.
		if !bytes.HasPrefix(got, wantData) {
			t.Fatalf("delivered %q, want it to start with %q", got, wantData)
		}
		if valid && !bytes.Equal(got, wantData) {
			t.Fatalf("every record valid: delivered %q, want %q", got, wantData)
		}
	}
}

// dropWrites is a conn whose writes are dropped; its reads go to the conn
// it wraps, which NetConn exposes as the socket to read from.
type dropWrites struct{ net.Conn }

func (d dropWrites) Write(p []byte) (int, error) { return len(p), nil }
func (d dropWrites) NetConn() net.Conn           { return d.Conn }
