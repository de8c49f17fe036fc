package httpx_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/httpx"
)

// edgeServer serves a route that decodes its body, as every POST of the
// services does, and one that answers without reading it (as a refusal
// does), through Handler and with the listener's limits.
func edgeServer(t *testing.T, layers ...httpx.Layer) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /decode", func(w http.ResponseWriter, r *http.Request) {
		var v struct{ A string }
		if err := httpx.Decode(r, &v); err != nil {
			httpx.DecodeError(w, err)
			return
		}
		httpx.JSON(w, http.StatusCreated, v)
	})
	mux.HandleFunc("POST /refuse", func(w http.ResponseWriter, r *http.Request) {
		httpx.Error(w, http.StatusUnauthorized, "no credential")
	})
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = httpx.Server(httpx.Handler(mux, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, layers...))
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// writeThenRead sends a whole request of body (with a Content-Length, or
// chunked) before reading anything, as Python's requests does, and
// returns the status of the answer and whether the connection served a
// second request after it.
func writeThenRead(t *testing.T, addr, path string, body []byte, chunked bool) (int, bool, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	// A socket buffer of a usual size, not loopback's large automatic one:
	// the body is still being sent when the server answers.
	conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
	// The headers, then the body, each written whole (as Python's urllib
	// does).
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", path, addr)
	if chunked {
		req.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		if _, err := conn.Write(req.Bytes()); err != nil {
			return 0, false, fmt.Errorf("writing the headers: %w", err)
		}
		req.Reset()
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 64<<10)
			fmt.Fprintf(&req, "%x\r\n%s\r\n", n, rest[:n])
			rest = rest[n:]
		}
		req.WriteString("0\r\n\r\n")
	} else {
		fmt.Fprintf(&req, "Content-Length: %d\r\n\r\n", len(body))
		if _, err := conn.Write(req.Bytes()); err != nil {
			return 0, false, fmt.Errorf("writing the headers: %w", err)
		}
		req.Reset()
		req.Write(body)
	}
	if _, err := conn.Write(req.Bytes()); err != nil {
		return 0, false, fmt.Errorf("writing the request: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, fmt.Errorf("reading the answer: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The same connection, again, with a small body.
	small := `{"a": "x"}`
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", path, addr, len(small), small)
	again, err := http.ReadResponse(br, nil)
	reused := err == nil
	if reused {
		again.Body.Close()
	}
	return resp.StatusCode, reused, nil
}

// A client that sends its whole oversized body before it reads gets the
// 413 (or the refusal), not a reset connection; the connection even
// serves the next request.
func TestEdgeOversizedBodyAnswered(t *testing.T) {
	t.Parallel()
	srv := edgeServer(t)
	addr := srv.Listener.Addr().String()
	big := append(append([]byte(`{"a": "`), bytes.Repeat([]byte("x"), 2<<20)...), `"}`...)
	tests := []struct {
		name    string
		path    string
		chunked bool
		status  int
	}{
		{"413, Content-Length", "/decode", false, http.StatusRequestEntityTooLarge},
		{"413, chunked", "/decode", true, http.StatusRequestEntityTooLarge},
		{"refused unread, Content-Length", "/refuse", false, http.StatusUnauthorized},
		{"refused unread, chunked", "/refuse", true, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for try := range 10 {
				status, reused, err := writeThenRead(t, addr, tt.path, big, tt.chunked)
				if err != nil {
					t.Fatalf("try %d: %v", try, err)
				}
				if status != tt.status {
					t.Fatalf("try %d: status %d, want %d", try, status, tt.status)
				}
				if !reused {
					t.Errorf("try %d: the connection did not serve a second request", try)
				}
			}
		})
	}
}

// A body announced larger than MaxDrain is not read: the answer comes at
// once and the connection is closed after it.
func TestEdgeHugeBodyNotDrained(t *testing.T) {
	t.Parallel()
	srv := edgeServer(t)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /decode HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{", httpx.MaxDrain+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("status %d, close %v; want 413 and the connection closed", resp.StatusCode, resp.Close)
	}
}

// The listener's limits: headers bounded, a slow client's headers cut off.
func TestEdgeServerLimits(t *testing.T) {
	t.Parallel()
	srv := httpx.Server(http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("server limits unset: %+v", srv)
	}
	ts := edgeServer(t)
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", httpx.MaxHeaderBytes+4096))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d for headers over MaxHeaderBytes, want 431", resp.StatusCode)
	}
}

// A stream waiting on Closing ends when the server shuts down, so that
// the shutdown does not wait for it.
func TestClosingEndsStreams(t *testing.T) {
	started := make(chan struct{})
	srv := httpx.Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		close(started)
		select {
		case <-httpx.Closing(r.Context()):
		case <-r.Context().Done():
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	res, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	begun := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a stream open: %v", err)
	}
	if d := time.Since(begun); d > 2*time.Second {
		t.Errorf("the shutdown waited %s for the stream", d)
	}
	if httpx.Closing(context.Background()) != nil {
		t.Error("Closing of a context no server made is not nil")
	}
}
