package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stockflow/stockflow/internal/auth"
	"github.com/stockflow/stockflow/internal/fail"
)

// A key added is accepted with its roles; the file keeps its hash, never
// the key, readable by its owner only; a key revoked is refused once the
// file is read again, and not before.
func TestKeys(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "keys.json")
	shop, err := auth.AddKey(file, "storefront", []auth.Role{auth.Shop})
	if err != nil {
		t.Fatal(err)
	}
	stock, err := auth.AddKey(file, "stock-team", []auth.Role{auth.Stock, auth.Read})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(shop, auth.KeyPrefix) || len(shop) < 40 || shop == stock {
		t.Fatalf("keys %q, %q: want two long keys starting %s", shop, stock, auth.KeyPrefix)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimPrefix(shop, auth.KeyPrefix)
	if strings.Contains(string(data), secret) || strings.Contains(string(data), strings.TrimPrefix(stock, auth.KeyPrefix)) {
		t.Fatalf("the key file holds a key in clear:\n%s", data)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	if _, err := auth.AddKey(file, "storefront", []auth.Role{auth.Shop}); !errors.Is(err, fail.Conflict) {
		t.Errorf("a second key named storefront: %v, want a conflict", err)
	}

	keys, err := auth.LoadKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key   string
		name  string
		roles []auth.Role
	}{
		{shop, "storefront", []auth.Role{auth.Shop}},
		{stock, "stock-team", []auth.Role{auth.Stock, auth.Read}},
		{shop + "x", "", nil},
		{shop[:len(shop)-1], "", nil},
		{"sfk_", "", nil},
		{secret, "", nil}, // without its prefix
		{"", "", nil},
	}
	for _, tt := range tests {
		p, err := keys.Authenticate(tt.key)
		if tt.name == "" {
			if err == nil {
				t.Errorf("a wrong key was accepted as %q", p.Name)
			}
			continue
		}
		if err != nil || p.Name != tt.name || len(p.Roles) != len(tt.roles) {
			t.Errorf("key of %s: %+v, %v", tt.name, p, err)
		}
	}

	if err := auth.RevokeKey(file, "storefront"); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Authenticate(shop); err != nil {
		t.Errorf("a revoked key was refused before the file was read again: %v", err)
	}
	if n, err := keys.Reload(); err != nil || n != 1 {
		t.Fatalf("Reload: %d keys, %v; want 1", n, err)
	}
	if _, err := keys.Authenticate(shop); err == nil {
		t.Error("a revoked key was accepted after Reload")
	}
	if _, err := keys.Authenticate(stock); err != nil {
		t.Errorf("the key left was refused after Reload: %v", err)
	}
	if err := auth.RevokeKey(file, "storefront"); !errors.Is(err, fail.NotFound) {
		t.Errorf("revoking it again: %v, want not found", err)
	}

	// A broken file keeps the keys read before in force.
	if err := os.WriteFile(file, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Reload(); err == nil {
		t.Error("Reload of a broken file: no error")
	}
	if _, err := keys.Authenticate(stock); err != nil {
		t.Errorf("after a failed Reload, a key in force was refused: %v", err)
	}
}

func TestReadKeyFileRefuses(t *testing.T) {
	t.Parallel()
	hash := strings.Repeat("ab", 32)
	tests := []struct {
		name, content, want string
	}{
		{"not JSON", "keys", "key file"},
		{"unknown field", `{"keys": [], "extra": 1}`, "unknown field"},
		{"no name", `{"keys": [{"roles": ["shop"], "sha256": "` + hash + `"}]}`, "has no name"},
		{"two names", `{"keys": [{"name": "a", "sha256": "` + hash + `"}, {"name": "a", "sha256": "` + hash + `"}]}`, "two keys"},
		{"short hash", `{"keys": [{"name": "a", "sha256": "abcd"}]}`, "64 hex digits"},
		{"a key in clear", `{"keys": [{"name": "a", "sha256": "sfk_abc"}]}`, "64 hex digits"},
		{"unknown role", `{"keys": [{"name": "a", "roles": ["admin"], "sha256": "` + hash + `"}]}`, `unknown role "admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(file, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := auth.LoadKeys(file); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadKeys: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestParseRoles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"shop", 1, true},
		{"shop,stock, ops ,read", 4, true},
		{"shop,shop", 1, true},
		{"", 0, false},
		{"admin", 0, false},
	}
	for _, tt := range tests {
		got, err := auth.ParseRoles(tt.in)
		if (err == nil) != tt.ok || len(got) != tt.want {
			t.Errorf("ParseRoles(%q) = %v, %v", tt.in, got, err)
		}
	}
}
