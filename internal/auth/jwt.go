package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWTConfig says which JWTs a server accepts.
type JWTConfig struct {
	// JWKSURL is where the identity provider publishes its public keys
	// (a JSON Web Key Set).
	JWKSURL string
	// Issuer and Audience are the "iss" a token must have, and a value
	// its "aud" must hold.
	Issuer, Audience string
	// RolesClaim names the claim holding the caller's roles, a list of
	// strings or one string of space- or comma-separated roles; a dotted
	// name reaches into objects ("realm_access.roles"). Default "roles".
	RolesClaim string
	// Client fetches the key set; default: one with a 10 s timeout.
	Client *http.Client
}

// The key set's refreshing: kept for jwksMaxAge, fetched again at most
// once every jwksMinRefresh, when it is older or a token names a key it
// lacks (the provider rotated its keys).
const (
	jwksMaxAge     = time.Hour
	jwksMinRefresh = 30 * time.Second
	jwksMaxBytes   = 1 << 20
	// leeway allows for clocks a little apart, on exp and nbf.
	leeway = 30 * time.Second
)

// algorithms are the only signatures accepted: "none", HMAC (which would
// take a public key for a shared secret) and the rest are refused.
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// JWKS checks JWTs against the key set of an identity provider, cached.
type JWKS struct {
	cfg JWTConfig
	now func() time.Time

	cache atomic.Pointer[keyCache]
	mu    sync.Mutex // one fetch at a time
	tried time.Time  // of the last fetch, under mu
}

type keyCache struct {
	keys []jose.JSONWebKey
	at   time.Time
}

// NewJWKS returns the checker of cfg; it fetches the key set when a token
// first needs it (Fetch does it sooner).
func NewJWKS(cfg JWTConfig) (*JWKS, error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("JWKS URL %q: want https://host/path", cfg.JWKSURL)
	}
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("a JWKS needs the issuer and the audience that tokens must name")
	}
	if cfg.RolesClaim == "" {
		cfg.RolesClaim = "roles"
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &JWKS{cfg: cfg, now: time.Now}, nil
}

// Fetch fetches the key set now and returns how many signing keys it holds.
func (j *JWKS) Fetch(ctx context.Context) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetchLocked(ctx)
}

func (j *JWKS) fetchLocked(ctx context.Context) (int, error) {
	j.tried = j.now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.cfg.JWKSURL, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.cfg.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetching the key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetching the key set: %s answered %s", j.cfg.JWKSURL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return 0, fmt.Errorf("fetching the key set: %w", err)
	}
	if len(body) > jwksMaxBytes {
		return 0, fmt.Errorf("fetching the key set: %s sent more than 1 MiB", j.cfg.JWKSURL)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return 0, fmt.Errorf("the key set at %s: %w", j.cfg.JWKSURL, err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			k = k.Public() // a provider should never publish a private key; use its public half
		}
		if k.Valid() {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return 0, fmt.Errorf("the key set at %s holds no public signing key", j.cfg.JWKSURL)
	}
	j.cache.Store(&keyCache{keys: keys, at: j.now()})
	return len(keys), nil
}

// keysFor returns the keys that may have signed a token naming kid (every
// key when kid is empty), fetching the set again when it is old or lacks
// kid, at most once every jwksMinRefresh.
func (j *JWKS) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	c := j.cache.Load()
	if c != nil && j.now().Sub(c.at) < jwksMaxAge {
		if ks := match(c.keys, kid); len(ks) > 0 {
			return ks, nil
		}
	}
	j.mu.Lock()
	var err error
	if c2 := j.cache.Load(); c2 == c && (j.tried.IsZero() || j.now().Sub(j.tried) >= jwksMinRefresh) {
		_, err = j.fetchLocked(ctx)
	}
	c = j.cache.Load()
	j.mu.Unlock()
	if c == nil {
		if err == nil {
			err = errors.New("the key set was not fetched yet; retried every 30 s")
		}
		return nil, &Refusal{Reason: KeysUnavailable, Err: err}
	}
	// A stale set is better than none while the provider is away.
	if ks := match(c.keys, kid); len(ks) > 0 {
		return ks, nil
	}
	return nil, refuse(InvalidToken, "the key set has no key %q", kid)
}

func match(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// Authenticate checks token: signed with RS256 or ES256 by a key of the
// set, not expired (it must have an expiry), not before its not-before,
// of the issuer and for the audience. Its roles are those of the roles
// claim that stockflow knows; the others are ignored.
func (j *JWKS) Authenticate(ctx context.Context, token string) (Principal, error) {
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		return Principal{}, refuse(InvalidToken, "not a JWT signed with RS256 or ES256: %v", err)
	}
	if len(tok.Headers) != 1 {
		return Principal{}, refuse(InvalidToken, "a JWT has one signature, this has %d", len(tok.Headers))
	}
	h := tok.Headers[0]
	keys, err := j.keysFor(ctx, h.KeyID)
	if err != nil {
		return Principal{}, err
	}
	var std jwt.Claims
	var claims map[string]any
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if err = tok.Claims(k.Key, &std, &claims); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Principal{}, refuse(InvalidToken, "bad signature (%s, key %q)", h.Algorithm, h.KeyID)
	}
	if std.Expiry == nil {
		return Principal{}, refuse(InvalidToken, "the token has no expiry (exp)")
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: j.cfg.Issuer, AnyAudience: jwt.Audience{j.cfg.Audience}, Time: j.now()}, leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired), errors.Is(err, jwt.ErrNotValidYet):
		return Principal{}, refuse(ExpiredToken, "%v", err)
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Principal{}, refuse(InvalidToken, "issuer %q, want %q", std.Issuer, j.cfg.Issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Principal{}, refuse(InvalidToken, "audience %q, want %q", []string(std.Audience), j.cfg.Audience)
	case err != nil:
		return Principal{}, refuse(InvalidToken, "%v", err)
	}
	return Principal{Name: "jwt:" + std.Subject, Roles: rolesOf(claim(claims, j.cfg.RolesClaim))}, nil
}

// claim returns the claim of a dotted name, nil when it is missing.
func claim(claims map[string]any, name string) any {
	var v any = claims
	for _, part := range strings.Split(name, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// rolesOf reads the roles stockflow knows from a claim's value: a list of
// strings, or one string of roles separated by spaces or commas.
func rolesOf(v any) []Role {
	var names []string
	switch v := v.(type) {
	case string:
		names = strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' })
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				names = append(names, s)
			}
		}
	}
	var roles []Role
	for _, n := range names {
		if r := Role(n); slices.Contains(Roles, r) && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	return roles
}
