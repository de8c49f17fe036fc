package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/stockflow/stockflow/internal/httpx"
)

// Policy says which role each route needs. A caller may call a route if
// it has the route's role, or, for a GET, the read role. A GET missing
// from Routes needs read; any other route missing from it is refused to
// everyone (a route added without a role stays closed).
type Policy struct {
	// Routes maps a route's mux pattern ("POST /allocate") to its role.
	Routes map[string]Role
	// Open are the patterns anyone may call, without a credential
	// ("GET /healthz").
	Open map[string]bool
}

// Allows reports whether p may call the route of pattern, and the role
// the route needs.
func (pol Policy) Allows(p Principal, pattern string) (bool, Role) {
	if pattern == "" {
		// No route: any caller may learn that (404, 405).
		return true, ""
	}
	role, ok := pol.Routes[pattern]
	get := strings.HasPrefix(pattern, http.MethodGet+" ")
	switch {
	case !ok && get:
		return p.Has(Read), Read
	case !ok:
		return false, ""
	}
	return p.Has(role) || (get && p.Has(Read)), role
}

// Guard authenticates requests and refuses those that may not call their
// route.
type Guard struct {
	// Keys are the API keys accepted; nil for none.
	Keys *Keys
	// JWT checks the tokens of an identity provider; nil for none.
	JWT *JWKS
	// Policy says which role each route needs.
	Policy Policy
	Log    *slog.Logger
	// Refused, when set, counts each refusal by its reason.
	Refused func(reason string)
}

// Authenticate returns the caller of r's credential.
func (g *Guard) Authenticate(ctx context.Context, r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, &Refusal{Reason: Missing}
	}
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" || strings.ContainsAny(cred, " \t") {
		return Principal{}, refuse(Malformed, "the Authorization header is not \"Bearer <credential>\"")
	}
	switch {
	case g.Keys != nil && strings.HasPrefix(cred, KeyPrefix):
		return g.Keys.Authenticate(cred)
	case g.JWT != nil && strings.Count(cred, ".") == 2:
		return g.JWT.Authenticate(ctx, cred)
	case g.Keys != nil:
		return Principal{}, refuse(UnknownKey, "not an API key")
	}
	return Principal{}, refuse(InvalidToken, "not a JWT")
}

// messages answer each reason; none says more than the caller knows.
var messages = map[Reason]string{
	Missing:         "no credential: send the header Authorization: Bearer, followed by an API key or a token",
	Malformed:       "the Authorization header must be Bearer, followed by an API key or a token",
	UnknownKey:      "unknown API key (revoked, or never made)",
	InvalidToken:    "invalid token",
	ExpiredToken:    "expired token",
	KeysUnavailable: "tokens cannot be checked now: the identity provider's keys are unavailable",
}

// Layer is an httpx.Layer: the routes of Policy.Open pass; every other
// request needs a valid credential (401 without) whose caller may call the
// route (403 otherwise). Each refusal is logged, without the credential,
// and counted.
func (g *Guard) Layer(next http.Handler, pattern string) http.Handler {
	if g.Policy.Open[pattern] {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		p, err := g.Authenticate(ctx, r)
		if err != nil {
			reason := reasonOf(err)
			g.refused(ctx, w, r, reason, err, "")
			w.Header().Set("WWW-Authenticate", `Bearer realm="stockflow"`)
			httpx.Error(w, http.StatusUnauthorized, messages[reason])
			return
		}
		if ok, role := g.Policy.Allows(p, pattern); !ok {
			err := fmt.Errorf("%s has roles %v; the route needs %s", p.Name, p.Roles, needs(role, pattern))
			g.refused(ctx, w, r, Forbidden, err, p.Name)
			httpx.Error(w, http.StatusForbidden, fmt.Sprintf("forbidden: %s may not call %s, which needs %s", p.Name, pattern, needs(role, pattern)))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(ctx, p)))
	})
}

// needs says which roles may call a route.
func needs(role Role, pattern string) string {
	switch {
	case role == "":
		return "a role it has none of (the route has no role)"
	case role != Read && strings.HasPrefix(pattern, http.MethodGet+" "):
		return "the " + string(role) + " or read role"
	}
	return "the " + string(role) + " role"
}

func (g *Guard) refused(ctx context.Context, w http.ResponseWriter, r *http.Request, reason Reason, err error, caller string) {
	if g.Refused != nil {
		g.Refused(string(reason))
	}
	if g.Log == nil {
		return
	}
	status := http.StatusUnauthorized
	if reason == Forbidden {
		status = http.StatusForbidden
	}
	attrs := []slog.Attr{
		slog.Int("status", status), slog.String("reason", string(reason)),
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr),
		slog.String("correlation_id", w.Header().Get(httpx.CorrelationHeader)),
	}
	if caller != "" {
		attrs = append(attrs, slog.String("caller", caller))
	}
	var ref *Refusal
	if errors.As(err, &ref) {
		err = ref.Err
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	g.Log.LogAttrs(ctx, slog.LevelWarn, "request refused", attrs...)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the caller p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// From returns the caller a request's context carries, if any.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
