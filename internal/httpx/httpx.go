// Package httpx holds what every context's HTTP adapter shares: JSON
// answers, strict bodies, a size limit, error bodies for the router's own
// 404 and 405, and one log line per request carrying the flow's
// correlation id.
package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stockflow/stockflow/internal/decode"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/valid"
)

// Mux is where routes are registered: an *http.ServeMux, or a wrapper
// that also lists them (the tests that check docs/openapi.json against
// the routes the services register).
type Mux interface {
	Handle(pattern string, handler http.Handler)
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// MaxBody is the largest request body read.
const MaxBody = 1 << 20

// CorrelationHeader carries a flow's correlation id in and out.
const CorrelationHeader = "X-Correlation-ID"

// JSON answers v with status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Message is the body of every error answer.
type Message struct {
	Message string `json:"message"`
}

// Error answers status with {"message": msg}.
// Every service's messages read alike: a sentence that starts with a
// capital ("Out of stock for sku LAMP", "No order o1").
func Error(w http.ResponseWriter, status int, msg string) {
	JSON(w, status, Message{sentence(msg)})
}

// sentence returns msg with its first letter upper-cased.
func sentence(msg string) string {
	r, n := utf8.DecodeRuneInString(msg)
	if r == utf8.RuneError || !unicode.IsLower(r) {
		return msg
	}
	return string(unicode.ToUpper(r)) + msg[n:]
}

// ErrTooLarge: the body is larger than MaxBody.
var ErrTooLarge = errors.New("request body larger than 1 MiB")

// Decode reads the request's JSON object body into dst, requiring fields.
// Its errors wrap fail.Invalid or ErrTooLarge.
func Decode(r *http.Request, dst any, required ...string) error {
	if r.ContentLength > MaxBody {
		return ErrTooLarge
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, MaxBody)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return ErrTooLarge
		}
		return &decode.Error{Reason: "reading body: " + err.Error()}
	}
	return decode.Object(buf.Bytes(), dst, required...)
}

// DecodeError answers a Decode error: 413 or 400.
func DecodeError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrTooLarge) {
		Error(w, http.StatusRequestEntityTooLarge, ErrTooLarge.Error())
		return
	}
	Error(w, http.StatusBadRequest, err.Error())
}

// probes are the paths of liveness and readiness probes: asked every few
// seconds, logged at debug level whatever they answer.
var probes = map[string]bool{"/healthz": true, "/readyz": true}

// SlowRequest is how long a request may take before its line is logged
// as a warning.
const SlowRequest = 500 * time.Millisecond

// A Layer wraps the handler a request is routed to, to answer it first
// (a CORS preflight) or refuse it (a caller without the route's role).
// pattern is the mux pattern of the request's route ("POST /allocate"), ""
// when no route matches (the handler then answers 404 or 405).
type Layer func(next http.Handler, pattern string) http.Handler

// Handler wraps mux: it starts a flow for each request (its correlation id
// taken from the X-Correlation-ID header when given), runs the request
// through layers (the first outermost), answers the router's own 404 and
// 405 with JSON, recovers panics as 500, drains a request body left unread
// before answering (DrainBody), and logs one line per request: at debug
// level, at warn when slower than SlowRequest, at error for a 5xx.
func Handler(mux *http.ServeMux, log *slog.Logger, observe func(route string, status int, d time.Duration), layers ...Layer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := messaging.StartFlow(r.Context(), r.Header.Get(CorrelationHeader))
		meta := messaging.MetaFrom(ctx)
		w.Header().Set(CorrelationHeader, meta.CorrelationID)
		r = r.WithContext(ctx)
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		if r.Body != nil && r.Body != http.NoBody {
			rec.body = &watchedBody{ReadCloser: r.Body, limit: r.ContentLength}
			r.Body = rec.body
			rec.expectContinue = strings.EqualFold(r.Header.Get("Expect"), "100-continue")
		}
		var h http.Handler = mux // the mux, not the handler it finds, sets path values
		_, pattern := mux.Handler(r)
		if pattern == "" {
			h = jsonErrors(mux)
		}
		for _, layer := range slices.Backward(layers) {
			h = layer(h, pattern)
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					log.ErrorContext(ctx, "panic in handler", "panic", p, "path", r.URL.Path)
					if !rec.wrote {
						Error(rec, http.StatusInternalServerError, "internal error")
					}
				}
			}()
			h.ServeHTTP(rec, r)
		}()
		d := time.Since(start)
		if observe != nil {
			observe(pattern, rec.status, d)
		}
		// One line a request is too many to keep at full load: it is a
		// debug line, unless the request failed on stockflow's side or was
		// slow.
		level := slog.LevelDebug
		attrs := []slog.Attr{
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rec.status), slog.Float64("duration_ms", float64(d.Microseconds())/1000),
			slog.String("correlation_id", meta.CorrelationID),
		}
		switch {
		case probes[r.URL.Path]:
			// A probe's 503 says what /readyz says; the readiness watch
			// logs each change once.
		case rec.status >= 500:
			level = slog.LevelError
		case d >= SlowRequest:
			level = slog.LevelWarn
			attrs = append(attrs, slog.Bool("slow", true))
		}
		log.LogAttrs(ctx, level, "request", attrs...)
	})
}

// jsonErrors turns the router's plain-text 404 and 405 into JSON.
func jsonErrors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &captured{header: http.Header{}}
		h.ServeHTTP(cw, r)
		for k, v := range cw.header {
			if k != "Content-Type" && k != "X-Content-Type-Options" {
				w.Header()[k] = v
			}
		}
		msg := "no route " + r.Method + " " + r.URL.Path
		if cw.status == http.StatusMethodNotAllowed {
			msg = "method " + r.Method + " not allowed on " + r.URL.Path
		}
		Error(w, cw.status, msg)
	})
}

type captured struct {
	header http.Header
	status int
}

func (c *captured) Header() http.Header         { return c.header }
func (c *captured) Write(b []byte) (int, error) { return len(b), nil }
func (c *captured) WriteHeader(s int)           { c.status = s }

type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
	// body is the request's body, watched to drain what the handler left
	// unread before the answer goes out; nil without a body.
	body           *watchedBody
	expectContinue bool
}

func (r *recorder) WriteHeader(s int) {
	if !r.wrote {
		r.status, r.wrote = s, true
		r.drain()
	}
	r.ResponseWriter.WriteHeader(s)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.wrote = true
		r.drain()
	}
	return r.ResponseWriter.Write(b)
}

// drain reads what is left of the request's body before the answer is
// written (DrainBody).
func (r *recorder) drain() {
	if r.body == nil || r.body.eof {
		return
	}
	if r.expectContinue && !r.body.read {
		// The client waits for a 100 Continue it will not get: it sends
		// no body, and the server closes the connection after the answer.
		return
	}
	if !DrainBody(r.body) {
		r.Header().Set("Connection", "close")
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Serve runs srv until ctx is done, then shuts it down, letting requests in
// flight finish (for up to grace).
func Serve(ctx context.Context, srv *http.Server, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	return srv.Shutdown(sctx)
}

// Fail answers err by its kind (package fail), the one mapping for every
// service: invalid input 400, not found 404, conflict 409, unavailable 503
// (with Retry-After), each with the error's text; anything else is logged
// and answered 500 "internal error". A body too large is 413, a request
// its client gave up on 499.
func Fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	switch {
	case errors.Is(err, ErrTooLarge):
		Error(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	case errors.Is(err, context.Canceled):
		Error(w, 499, "request cancelled")
		return
	}
	kind := fail.KindOf(err)
	status := Status(kind)
	if kind == fail.Internal || kind == fail.Unavailable {
		log.ErrorContext(r.Context(), "request failed", "err", err, "kind", kind.String(), "path", r.URL.Path,
			"correlation_id", r.Header.Get(CorrelationHeader))
	}
	switch kind {
	case fail.Internal:
		Error(w, status, "internal error")
	case fail.Unavailable:
		w.Header().Set("Retry-After", "1")
		Error(w, status, err.Error())
	default:
		Error(w, status, err.Error())
	}
}

// Status is the HTTP status of an error of kind.
func Status(kind fail.Kind) int {
	switch kind {
	case fail.Invalid:
		return http.StatusBadRequest
	case fail.NotFound:
		return http.StatusNotFound
	case fail.Conflict:
		return http.StatusConflict
	case fail.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// PathRef returns the path value name, checked as an identifier.
func PathRef(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	return v, valid.Ref(name, v)
}

// QueryInt returns the integer query parameter name, or def when the
// request has none; a value that is not an integer is invalid (400).
func QueryInt(r *http.Request, name string, def int) (int, error) {
	q := r.URL.Query()
	if !q.Has(name) {
		return def, nil
	}
	n, err := strconv.Atoi(q.Get(name))
	if err != nil {
		return 0, fail.Errorf(fail.Invalid, "%s must be an integer, got %q", name, q.Get(name))
	}
	return n, nil
}
