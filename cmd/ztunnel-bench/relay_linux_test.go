package main

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sendMSS is the segment size the kernel sends c's bytes in (TCP_MAXSEG of a connected
// socket): the smaller of what the route allows and what the peer advertised, less options.
func sendMSS(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mss int
	var serr error
	if err := rc.Control(func(fd uintptr) { mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return mss
}

// TestRelayMSS checks -mss: both local legs of a relay pair over loopback run in segments of
// the clamp instead of loopback's 65483 bytes. On the client side the relay's listener
// advertises it to the application that dials it; on the server side the relay's dial
// advertises it to the upstream that accepts it.
func TestRelayMSS(t *testing.T) {
	const clamp = 1000
	certs := t.TempDir()
	if err := writeRelayCerts(certs); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	upMSS := make(chan int, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		upMSS <- sendMSS(t, c)
		io.WriteString(c, "up\n")
		io.Copy(io.Discard, c)
	}()
	opts := sockOpts{mss: clamp}
	srv, err := startRelay(roleTLSServer, certs, []relayMapping{{"127.0.0.1:0", l.Addr().String(), "app1"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	cli, err := startRelay(roleTLSClient, certs, []relayMapping{{"127.0.0.1:0", srv.listeners[0].Addr().String(), "app1"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.close()
	conn := dialRelay(t, cli)
	if got, err := bufio.NewReader(conn).ReadString('\n'); err != nil || strings.TrimSpace(got) != "up" {
		t.Fatalf("read %q, %v through the relay pair", got, err)
	}
	if mss := sendMSS(t, conn); mss > clamp {
		t.Errorf("the application's connection to the client side sends %d-byte segments, want at most %d", mss, clamp)
	}
	select {
	case mss := <-upMSS:
		if mss > clamp {
			t.Errorf("the upstream's connection from the server side sends %d-byte segments, want at most %d", mss, clamp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream was not reached")
	}

	// Without -mss, loopback's segments: the check above can tell the two apart.
	plain, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if mss := sendMSS(t, plain); mss <= clamp {
		t.Errorf("a plain loopback connection sends %d-byte segments; the test cannot tell the clamp from the route", mss)
	}
}

// TestRelayArgs checks the relay's own flags: -mss and -mark reach its socket options, and
// values out of range are refused with the flag's name.
func TestRelayArgs(t *testing.T) {
	a, err := parseRelayArgs(roleTLSClient, []string{"-mss", "1460", "-mark", "1337", "-map", "127.0.0.1:0=127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (sockOpts{mark: 1337, mss: 1460}); a.opts != want {
		t.Errorf("socket options %+v, want %+v", a.opts, want)
	}
	for _, c := range []struct{ arg, flag string }{
		{"-mss=87", "-mss"}, {"-mss=65536", "-mss"}, {"-mss=-1", "-mss"}, {"-mark=4294967296", "-mark"},
	} {
		_, err := parseRelayArgs(roleTLSClient, []string{c.arg, "-map", "127.0.0.1:0=127.0.0.1:1"})
		if err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%s: error %v, want one naming %s", c.arg, err, c.flag)
		}
	}
}
