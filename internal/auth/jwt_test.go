package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/stockflow/stockflow/internal/auth"
)

// idp is an identity provider made for a test: keys, and their set
// served over HTTP.
type idp struct {
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	set     atomic.Pointer[jose.JSONWebKeySet]
	fetches atomic.Int32
	url     string
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{rsa: rk, ec: ek}
	p.set.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &rk.PublicKey, KeyID: "rsa-1", Algorithm: string(jose.RS256), Use: "sig"},
		{Key: &ek.PublicKey, KeyID: "ec-1", Algorithm: string(jose.ES256), Use: "sig"},
	}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		json.NewEncoder(w).Encode(p.set.Load())
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL + "/.well-known/jwks.json"
	return p
}

const (
	issuer   = "https://id.example"
	audience = "stockflow"
)

// claims are a valid token's, for an hour.
func claims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": issuer, "aud": audience, "sub": "alice",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"roles": []string{"shop", "admin"},
	}
}

// sign signs claims with key, of alg, naming kid.
func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, c map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// handMade builds a token with any header, signed by sig over its first
// two parts (nil: no signature), as an attacker would.
func handMade(header map[string]any, c map[string]any, sig func(signed []byte) []byte) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(c)
	signed := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	var s []byte
	if sig != nil {
		s = sig([]byte(signed))
	}
	return signed + "." + enc.EncodeToString(s)
}

func with(c map[string]any, k string, v any) map[string]any {
	c[k] = v
	return c
}

func without(c map[string]any, k string) map[string]any {
	delete(c, k)
	return c
}

// Only a token signed with RS256 or ES256 by a key of the set, unexpired,
// of the issuer and for the audience, is accepted.
func TestJWKS(t *testing.T) {
	t.Parallel()
	p := newIDP(t)
	j, err := auth.NewJWKS(auth.JWTConfig{JWKSURL: p.url, Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(&p.rsa.PublicKey)
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	tests := []struct {
		name   string
		token  string
		reason auth.Reason // "" : accepted
	}{
		{"RS256", sign(t, jose.RS256, p.rsa, "rsa-1", claims()), ""},
		{"ES256", sign(t, jose.ES256, p.ec, "ec-1", claims()), ""},
		{"no kid", sign(t, jose.RS256, p.rsa, "", claims()), ""},
		{"audience among several", sign(t, jose.RS256, p.rsa, "rsa-1", with(claims(), "aud", []string{"other", audience})), ""},
		{"expired", sign(t, jose.RS256, p.rsa, "rsa-1", with(claims(), "exp", time.Now().Add(-time.Hour).Unix())), auth.ExpiredToken},
		{"not yet valid", sign(t, jose.RS256, p.rsa, "rsa-1", with(claims(), "nbf", time.Now().Add(time.Hour).Unix())), auth.ExpiredToken},
		{"no expiry", sign(t, jose.RS256, p.rsa, "rsa-1", without(claims(), "exp")), auth.InvalidToken},
		{"wrong issuer", sign(t, jose.RS256, p.rsa, "rsa-1", with(claims(), "iss", "https://evil.example")), auth.InvalidToken},
		{"no issuer", sign(t, jose.RS256, p.rsa, "rsa-1", without(claims(), "iss")), auth.InvalidToken},
		{"wrong audience", sign(t, jose.RS256, p.rsa, "rsa-1", with(claims(), "aud", "billing")), auth.InvalidToken},
		{"no audience", sign(t, jose.RS256, p.rsa, "rsa-1", without(claims(), "aud")), auth.InvalidToken},
		{"bad signature: another key", sign(t, jose.RS256, other, "rsa-1", claims()), auth.InvalidToken},
		{"bad signature: claims changed", func() string {
			parts := strings.Split(sign(t, jose.RS256, p.rsa, "rsa-1", claims()), ".")
			forged, _ := json.Marshal(with(claims(), "roles", []string{"ops"}))
			parts[1] = base64.RawURLEncoding.EncodeToString(forged)
			return strings.Join(parts, ".")
		}(), auth.InvalidToken},
		{"alg none", handMade(map[string]any{"alg": "none", "typ": "JWT"}, claims(), nil), auth.InvalidToken},
		{"alg None", handMade(map[string]any{"alg": "None", "kid": "rsa-1"}, claims(), nil), auth.InvalidToken},
		{"HS256 with the public key as secret", handMade(map[string]any{"alg": "HS256", "kid": "rsa-1"}, claims(), func(b []byte) []byte {
			m := hmac.New(sha256.New, pubPEM)
			m.Write(b)
			return m.Sum(nil)
		}), auth.InvalidToken},
		{"RS384", sign(t, jose.RS384, p.rsa, "rsa-1", claims()), auth.InvalidToken},
		{"PS256", sign(t, jose.PS256, p.rsa, "rsa-1", claims()), auth.InvalidToken},
		{"ES256 header on an RSA key", handMade(map[string]any{"alg": "ES256", "kid": "rsa-1"}, claims(), func(b []byte) []byte {
			h := sha256.Sum256(b)
			s, _ := rsa.SignPKCS1v15(rand.Reader, p.rsa, crypto.SHA256, h[:])
			return s
		}), auth.InvalidToken},
		{"unknown kid", sign(t, jose.RS256, other, "rsa-9", claims()), auth.InvalidToken},
		{"not a JWT", "abc.def.ghi", auth.InvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, err := j.Authenticate(context.Background(), tt.token)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if pr.Name != "jwt:alice" || len(pr.Roles) != 1 || pr.Roles[0] != auth.Shop {
					t.Errorf("accepted as %+v, want jwt:alice with the shop role alone", pr)
				}
				return
			}
			var r *auth.Refusal
			if !errors.As(err, &r) || r.Reason != tt.reason {
				t.Fatalf("got %+v, %v; want refused for %s", pr, err, tt.reason)
			}
			if strings.Contains(err.Error(), tt.token) {
				t.Errorf("the refusal quotes the token: %v", err)
			}
		})
	}
}

// A token naming a key the set lacks fetches the set again (the provider
// rotated its keys), at most once every 30 seconds.
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	p := newIDP(t)
	j, err := auth.NewJWKS(auth.JWTConfig{JWKSURL: p.url, Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Authenticate(context.Background(), sign(t, jose.RS256, p.rsa, "rsa-1", claims())); err != nil {
		t.Fatal(err)
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for the first token, want 1", n)
	}
	var clock atomic.Int64 // seconds ahead of the time
	auth.SetNow(j, func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Second) })
	// The provider rotates: a new key, which the cached set lacks.
	rotated, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.set.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rotated.PublicKey, KeyID: "rsa-2", Algorithm: string(jose.RS256), Use: "sig"}}})
	if _, err := j.Authenticate(context.Background(), sign(t, jose.RS256, rotated, "rsa-2", claims())); err == nil {
		t.Fatal("a token of a key not in the set, within 30 s of the fetch: accepted")
	}
	clock.Store(31)
	if _, err := j.Authenticate(context.Background(), sign(t, jose.RS256, rotated, "rsa-2", claims())); err != nil {
		t.Fatalf("a token of the rotated key: %v", err)
	}
	// Unknown kids do not make it fetch again within 30 s.
	for range 20 {
		j.Authenticate(context.Background(), sign(t, jose.RS256, rotated, "nope", claims()))
	}
	if _, err := j.Authenticate(context.Background(), sign(t, jose.RS256, p.rsa, "rsa-1", claims())); err == nil {
		t.Error("a token of a key rotated out: accepted")
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2: unknown keys must not fetch the set at every request", n)
	}
}

// The roles come from the claim named, a list or a string, nested or not;
// roles stockflow does not know are ignored.
func TestJWKSRolesClaim(t *testing.T) {
	t.Parallel()
	p := newIDP(t)
	tests := []struct {
		claim string
		value any
		want  []auth.Role
	}{
		{"roles", []string{"stock", "read"}, []auth.Role{auth.Stock, auth.Read}},
		{"scope", "openid ops read", []auth.Role{auth.Ops, auth.Read}},
		{"realm_access.roles", map[string]any{"roles": []string{"shop"}}, []auth.Role{auth.Shop}},
		{"roles", "admin", nil},
		{"roles", 42, nil},
	}
	for _, tt := range tests {
		j, err := auth.NewJWKS(auth.JWTConfig{JWKSURL: p.url, Issuer: issuer, Audience: audience, RolesClaim: tt.claim})
		if err != nil {
			t.Fatal(err)
		}
		c := without(claims(), "roles")
		name, _, _ := strings.Cut(tt.claim, ".")
		c[name] = tt.value
		pr, err := j.Authenticate(context.Background(), sign(t, jose.ES256, p.ec, "ec-1", c))
		if err != nil {
			t.Fatalf("%s: %v", tt.claim, err)
		}
		if len(pr.Roles) != len(tt.want) || (len(tt.want) > 0 && pr.Roles[0] != tt.want[0]) {
			t.Errorf("claim %s = %v: roles %v, want %v", tt.claim, tt.value, pr.Roles, tt.want)
		}
	}
}

// A provider away: tokens refused as such, and the set fetched again
// later.
func TestJWKSUnavailable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	j, err := auth.NewJWKS(auth.JWTConfig{JWKSURL: url, Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	p := newIDP(t)
	_, err = j.Authenticate(context.Background(), sign(t, jose.RS256, p.rsa, "rsa-1", claims()))
	var r *auth.Refusal
	if !errors.As(err, &r) || r.Reason != auth.KeysUnavailable {
		t.Errorf("with the provider away: %v, want %s", err, auth.KeysUnavailable)
	}
	for _, cfg := range []auth.JWTConfig{
		{JWKSURL: "ftp://x", Issuer: issuer, Audience: audience},
		{JWKSURL: p.url, Audience: audience},
		{JWKSURL: p.url, Issuer: issuer},
	} {
		if _, err := auth.NewJWKS(cfg); err == nil {
			t.Errorf("NewJWKS(%+v) accepted", cfg)
		}
	}
}
