package app

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/ztunnel-go/ztunnel/internal/leakcheck"
	"github.com/ztunnel-go/ztunnel/internal/testwait"
)

// TestHTTPServerParks: an admin-style HTTP listener gives up its accept goroutine between
// requests and answers the next request all the same, on connections kept alive across a park
// and on new ones; close leaves no goroutine and a closed port.
func TestHTTPServerParks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPED: the epoll loop that parks listeners is Linux only")
	}
	base := leakcheck.Baseline()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") })
	s, err := startHTTP(&http.Server{Handler: mux}, l, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	serving := func() int { return leakcheck.Matching("net/http.(*Server).Serve(") }
	url := "http://" + l.Addr().String() + "/ping"
	tr := &http.Transport{}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(stage string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "pong" {
			t.Fatalf("%s: body %q", stage, body)
		}
	}
	for _, stage := range []string{"first request", "kept-alive connection after a park"} {
		testwait.Until(t, "the quiet listener to park before the "+stage, 5*time.Second, func() bool { return serving() == 0 })
		get(stage)
	}
	tr.CloseIdleConnections()
	testwait.Until(t, "the quiet listener to park again", 5*time.Second, func() bool { return serving() == 0 })
	get("new connection after a park")
	tr.CloseIdleConnections()
	s.close()
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after close")
	}
	leakcheck.Wait(t, base)
}
