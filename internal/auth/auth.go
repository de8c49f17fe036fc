// Package auth says who calls stockflow's HTTP API and what they may do.
//
// A caller shows a credential in its Authorization header ("Bearer
// <credential>"): an API key of stockflow's own (Keys, kept hashed in a
// file) or a JWT of an identity provider (JWKS). Either names the caller's
// roles; a Policy says which role each route needs, and Guard refuses a
// request without a valid credential (401) or without the role (403), with
// a JSON message, a log line that never shows the credential, and a count
// by reason.
package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is what a caller may do.
type Role string

// The roles.
const (
	// Shop: carts and orders, what a storefront calls.
	Shop Role = "shop"
	// Stock: batches, allocating and deallocating lines, the warehouse's
	// counts and damage.
	Stock Role = "stock"
	// Ops: what operators call (dead letters, metrics behind
	// --metrics-auth).
	Ops Role = "ops"
	// Read: every GET.
	Read Role = "read"
)

// Roles are every role, in the order they are listed.
var Roles = []Role{Shop, Stock, Ops, Read}

// ParseRoles reads a comma-separated list of roles ("shop,stock"),
// refusing an unknown one and an empty list.
func ParseRoles(s string) ([]Role, error) {
	var out []Role
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !slices.Contains(Roles, Role(v)) {
			return nil, fmt.Errorf("unknown role %q; roles: %s", v, RoleList())
		}
		if !slices.Contains(out, Role(v)) {
			out = append(out, Role(v))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no role given; roles: %s", RoleList())
	}
	return out, nil
}

// RoleList names every role, comma-separated.
func RoleList() string {
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// Principal is a caller whose credential was accepted.
type Principal struct {
	// Name names the caller in logs: the API key's name, or "jwt:" and
	// the token's subject.
	Name  string
	Roles []Role
}

// Has reports whether p has role.
func (p Principal) Has(role Role) bool { return slices.Contains(p.Roles, role) }

// Reason is why a request was refused: the label of
// stockflow_http_auth_failures_total.
type Reason string

// The reasons.
const (
	// Missing: no Authorization header.
	Missing Reason = "missing"
	// Malformed: an Authorization header that is not "Bearer <credential>".
	Malformed Reason = "malformed"
	// UnknownKey: an API key that is not (or no longer) in the key file.
	UnknownKey Reason = "unknown_key"
	// InvalidToken: a JWT whose signature, algorithm, issuer or audience
	// is wrong, or that JWTs are not accepted.
	InvalidToken Reason = "invalid_token"
	// ExpiredToken: a JWT past its expiry (or before its not-before).
	ExpiredToken Reason = "expired_token"
	// KeysUnavailable: the identity provider's key set could not be had.
	KeysUnavailable Reason = "jwks_unavailable"
	// Forbidden: a valid credential without the route's role.
	Forbidden Reason = "forbidden"
)

// Refusal is a credential refused, and why. Its message never quotes the
// credential.
type Refusal struct {
	Reason Reason
	Err    error
}

func (r *Refusal) Error() string {
	if r.Err == nil {
		return string(r.Reason)
	}
	return string(r.Reason) + ": " + r.Err.Error()
}

func (r *Refusal) Unwrap() error { return r.Err }

func refuse(reason Reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// reasonOf is the reason of err, InvalidToken unless it says another.
func reasonOf(err error) Reason {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return InvalidToken
}
