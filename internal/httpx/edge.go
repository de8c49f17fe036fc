package httpx

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// The limits of the HTTP listener: a client that is slow to send its
// headers, its body or its next request is cut off, and headers are
// bounded.
const (
	// ReadHeaderTimeout is how long a client may take to send a request's
	// headers.
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout is how long a client may take to send a whole request,
	// headers and body (at most MaxBody, or MaxDrain when it is refused).
	ReadTimeout = 30 * time.Second
	// IdleTimeout is how long a kept-alive connection may wait for its
	// next request.
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes bounds a request's header lines.
	MaxHeaderBytes = 64 << 10
)

// Server returns an HTTP server of h with the listener's limits.
func Server(h http.Handler) *http.Server {
	closing := make(chan struct{})
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), closingKey{}, (<-chan struct{})(closing))
		},
	}
	srv.RegisterOnShutdown(func() { close(closing) })
	return srv
}

type closingKey struct{}

// Closing returns a channel closed when the server answering the request
// of ctx starts to shut down (nil, never closed, for a server not made by
// Server). An answer that lasts (a stream) ends then: the shutdown lets
// requests in flight finish, and a stream would not.
func Closing(ctx context.Context) <-chan struct{} {
	c, _ := ctx.Value(closingKey{}).(<-chan struct{})
	return c
}

// MaxDrain is the most of a request body read and thrown away to answer a
// request that is refused before its body was read (413, 401...).
const MaxDrain = 8 << 20

// DrainBody reads what is left of body, up to MaxDrain, and reports
// whether it reached its end.
//
// Many clients (Python's requests and urllib among them) send the whole
// body before they read the answer. Answering such a client before its
// body has arrived and closing the connection makes the server's kernel
// reset it when the rest of the body comes in, and the reset destroys the
// answer the client has not read yet: the client sees "connection reset"
// instead of the 413. Reading the rest first (bounded by MaxDrain and by
// the server's ReadTimeout) lets the answer through, and the connection
// can even serve the next request. A body larger than MaxDrain is not read:
// the connection is closed after the answer, as before.
func DrainBody(body io.Reader) bool {
	if b, ok := body.(*watchedBody); ok && b.limit > MaxDrain {
		return false // announced larger than what is drained
	}
	_, err := io.CopyN(io.Discard, body, MaxDrain+1)
	return errors.Is(err, io.EOF) // nil: more than MaxDrain
}

// watchedBody is a request body that tells whether it was read, and read
// to its end.
type watchedBody struct {
	io.ReadCloser
	limit     int64 // the Content-Length, -1 when unknown
	read, eof bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read = true
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}
