package main

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/stockflow/stockflow/internal/auth"
)

// Every route has its role (or is open), and every role of the table
// names a route that exists.
func TestRouteRoles(t *testing.T) {
	t.Parallel()
	routes := servedRoutes(t)
	open := openRoutes(false)
	for _, r := range routes {
		if _, ok := routeRoles[r]; !ok && !open[r] {
			t.Errorf("route %q has no role in routeRoles (routes.go): give it one", r)
		}
	}
	for r := range routeRoles {
		if !slices.Contains(routes, r) {
			t.Errorf("routeRoles names %q, which no service registers", r)
		}
	}
	if openRoutes(true)["GET /metrics"] {
		t.Error("--metrics-auth leaves /metrics open")
	}
}

// With no authentication, stockflow serves a loopback address only,
// unless told to serve another open.
func TestCheckExposure(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		addr     string
		edge     edgeFlags
		refused  bool
		loopback bool
	}{
		{"127.0.0.1:5005", edgeFlags{}, false, true},
		{"[::1]:5005", edgeFlags{}, false, true},
		{"localhost:5005", edgeFlags{}, false, true},
		{":5005", edgeFlags{}, true, false},
		{"0.0.0.0:5005", edgeFlags{}, true, false},
		{"[::]:5005", edgeFlags{}, true, false},
		{"192.0.2.10:5005", edgeFlags{}, true, false},
		{"0.0.0.0:5005", edgeFlags{insecureNoAuth: true}, false, false},
		{"0.0.0.0:5005", edgeFlags{authKeys: "keys.json"}, false, false},
		{"0.0.0.0:5005", edgeFlags{jwks: "https://id.example/jwks"}, false, false},
	}
	for _, tt := range tests {
		if got := listensOnLoopback(tt.addr); got != tt.loopback {
			t.Errorf("listensOnLoopback(%q) = %v", tt.addr, got)
		}
		err := tt.edge.checkExposure(tt.addr, log)
		if (err != nil) != tt.refused {
			t.Errorf("%s with %+v: %v, want refused %v", tt.addr, tt.edge, err, tt.refused)
		}
		if err != nil && (!strings.Contains(err.Error(), "--insecure-no-auth") || !strings.Contains(err.Error(), "--auth-keys")) {
			t.Errorf("the refusal does not say what to do: %v", err)
		}
	}
}

// Every role guards at least one route.
func TestRolesUsed(t *testing.T) {
	t.Parallel()
	for _, r := range auth.Roles {
		used := false
		for _, role := range routeRoles {
			used = used || role == r
		}
		if !used {
			t.Errorf("role %s guards no route", r)
		}
	}
}
