package metrics

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The metrics answer is compressed here rather than by promhttp, because of what its
// compressors cost for ztunnel's small answers (8-70 KB of text): promhttp's gzip writer
// allocates 0.8 MB of deflate state and its zstd writer 1.3 MB and more (an 8 MB window), on
// every scrape whose pooled writer a collection has dropped, and an idle ztunnel's heap then
// holds that until the scavenger or the idle trim returns it. Here gzip is
// klauspost/compress's stateless deflate, fed up to 64 KiB at a time (its 0.29 MB of state
// is pooled), and zstd a streaming encoder with a 64 KiB window, one goroutine. The answers are
// streamed as promhttp writes them. benchmarks/README.md, "The metrics answer's compression
// (sixtieth session)", has the measures.

// offeredEncodings are the Content-Encodings of the metrics answer in order of preference at
// equal q-values: ztunnel's HTTP library offers zstd, br, gzip and deflate in that order; br
// and deflate are not offered here.
var offeredEncodings = [...]string{"zstd", "gzip", "identity"}

// zstdWindow bounds the zstd window, and with it the encoder's memory and the client's.
const zstdWindow = 64 << 10

// chunkSize is the most text the stateless gzip compresses at once. Within a chunk each 32 KiB
// block starts with the 8 KiB before it as its dictionary; a chunk starts with none. Larger
// chunks compress a large answer better but cost more: 256 KiB took a 2.3 MB answer to 31 KB
// instead of 41 KB, for 2.7 MB allocated instead of 1.8 MB (promhttp's gzip: 19 KB, 2.0 MB).
// The chunk buffer grows to what the answer needs.
const chunkSize = 64 << 10

// chunks holds chunk buffers for the next scrape.
var chunks = sync.Pool{New: func() any { return new([]byte) }}

// compressHandler serves next's answer compressed with the encoding the request's
// Accept-Encoding prefers. A successful answer is compressed as next writes it; any other
// is passed on uncompressed.
type compressHandler struct{ next http.Handler }

func (h compressHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	enc := negotiateEncoding(r.Header.Values("Accept-Encoding"))
	if enc == "identity" {
		h.next.ServeHTTP(w, r)
		return
	}
	cw := &compressWriter{ResponseWriter: w, enc: enc}
	h.next.ServeHTTP(cw, r)
	cw.finish()
}

// compressWriter compresses what a handler writes with enc once the handler has chosen a
// 200 status (explicitly or by writing); another status passes the answer on as it is.
type compressWriter struct {
	http.ResponseWriter
	enc    string
	status int // 0 until chosen

	z     io.WriteCloser // the compressor, while compressing
	chunk *[]byte        // gzip only: gathers up to chunkSize bytes for the stateless deflate
	out   io.Writer      // where Write goes once the status is chosen; nil for chunks
}

func (c *compressWriter) WriteHeader(status int) {
	if c.status != 0 {
		return
	}
	c.status = status
	c.out = c.ResponseWriter
	if status == http.StatusOK {
		c.ResponseWriter.Header().Set("Content-Encoding", c.enc)
		c.ResponseWriter.Header().Del("Content-Length")
		switch c.enc {
		case "gzip":
			z, err := gzip.NewWriterLevel(c.ResponseWriter, gzip.StatelessCompression)
			if err != nil { // not for a valid level
				panic(err)
			}
			c.z = z
			c.chunk = chunks.Get().(*[]byte)
			c.out = nil
		case "zstd":
			z, err := zstd.NewWriter(c.ResponseWriter, zstd.WithEncoderLevel(zstd.SpeedFastest),
				zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(zstdWindow))
			if err != nil { // not for valid options
				panic(err)
			}
			c.z = z
			c.out = z
		}
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *compressWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if c.chunk == nil {
		return c.out.Write(p)
	}
	n := len(p)
	for len(p) > 0 {
		buf := *c.chunk
		take := min(len(p), chunkSize-len(buf))
		buf = append(buf, p[:take]...)
		p = p[take:]
		if len(buf) == chunkSize {
			if _, err := c.z.Write(buf); err != nil {
				return n - len(p), err
			}
			buf = buf[:0]
		}
		*c.chunk = buf
	}
	return n, nil
}

// finish ends the compressed stream, if one was started.
func (c *compressWriter) finish() {
	if c.chunk != nil {
		if buf := *c.chunk; len(buf) > 0 {
			c.z.Write(buf)
		}
		*c.chunk = (*c.chunk)[:0]
		chunks.Put(c.chunk)
		c.chunk = nil
	}
	if c.z != nil {
		c.z.Close()
		c.z = nil
	}
}

// negotiateEncoding picks the Content-Encoding of the answer from the request's
// Accept-Encoding values as promhttp did: among offeredEncodings in order, the first whose q
// (its own, or that of "*") is highest; "identity" when nothing matches or the best q is 0.
// An entry whose parameters are not a q-value ends the parsing of its header line, as
// promhttp's parser does.
func negotiateEncoding(values []string) string {
	best, bestQ := "identity", -1.0
	for _, offer := range offeredEncodings {
		for _, v := range values {
			for entry := range strings.SplitSeq(v, ",") {
				name, params, _ := strings.Cut(entry, ";")
				name = strings.TrimSpace(name)
				if name == "" {
					break
				}
				q := 1.0
				if params = strings.TrimSpace(params); params != "" {
					qv, ok := strings.CutPrefix(params, "q=")
					if !ok {
						break
					}
					f, err := strconv.ParseFloat(strings.TrimSpace(qv), 64)
					if err != nil || f < 0 || f > 1 {
						break
					}
					q = f
				}
				if q > bestQ && (name == "*" || name == offer) {
					best, bestQ = offer, q
				}
			}
		}
	}
	if bestQ == 0 {
		return "identity"
	}
	return best
}
