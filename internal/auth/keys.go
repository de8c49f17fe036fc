package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/valid"
)

// KeyPrefix starts every API key, so that a key is told from a JWT at a
// glance, and secret scanners can find one committed by mistake.
const KeyPrefix = "sfk_"

// keyBytes is the randomness of a key: 256 bits.
const keyBytes = 32

// A key file holds the API keys, hashed: a JSON document
//
//	{"keys": [{"name": "storefront", "roles": ["shop"], "sha256": "<hex>", "created": "..."}]}
//
// A key is 256 random bits, so the SHA-256 of it is what is stored, and
// compared in constant time (crypto/subtle): this is the usual practice
// for API keys and tokens. A slow password hash (bcrypt, argon2) guards
// secrets people choose, which can be guessed; nobody can guess 256 random
// bits from their hash, and a fast hash keeps every request cheap.
type keyFile struct {
	Keys []StoredKey `json:"keys"`
}

// StoredKey is a key as its file keeps it.
type StoredKey struct {
	Name    string    `json:"name"`
	Roles   []Role    `json:"roles"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// ReadKeyFile returns the keys of the file at path, checked.
func ReadKeyFile(path string) ([]StoredKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	var f keyFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fail.Errorf(fail.Invalid, "key file %s: %v", path, err)
	}
	seen := map[string]bool{}
	for i, k := range f.Keys {
		switch h, err := hex.DecodeString(k.SHA256); {
		case k.Name == "":
			return nil, fail.Errorf(fail.Invalid, "key file %s: key %d has no name", path, i+1)
		case seen[k.Name]:
			return nil, fail.Errorf(fail.Invalid, "key file %s: two keys are named %q", path, k.Name)
		case err != nil || len(h) != sha256.Size:
			return nil, fail.Errorf(fail.Invalid, "key file %s: key %q: sha256 is not 64 hex digits", path, k.Name)
		}
		for _, r := range k.Roles {
			if !slices.Contains(Roles, r) {
				return nil, fail.Errorf(fail.Invalid, "key file %s: key %q: unknown role %q; roles: %s", path, k.Name, r, RoleList())
			}
		}
		seen[k.Name] = true
	}
	return f.Keys, nil
}

// writeKeyFile replaces the file at path with keys, readable by its owner
// only; a reader sees the old file or the new, never half of one.
func writeKeyFile(path string, keys []StoredKey) error {
	data, err := json.MarshalIndent(keyFile{Keys: keys}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	defer os.Remove(tmp.Name()) // once renamed, there is nothing to remove
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("key file: %w", err)
	}
	if err := errors.Join(tmp.Chmod(0o600), tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	return nil
}

// AddKey makes a new key named name with roles, stores its hash in the
// file at path (created if missing) and returns the key: it is shown once,
// and cannot be had again. A name taken already is a conflict.
func AddKey(path, name string, roles []Role) (string, error) {
	if err := valid.Ref("name", name); err != nil {
		return "", err
	}
	if len(roles) == 0 {
		return "", fail.Errorf(fail.Invalid, "no role given; roles: %s", RoleList())
	}
	keys, err := ReadKeyFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if slices.ContainsFunc(keys, func(k StoredKey) bool { return k.Name == name }) {
		return "", fail.Errorf(fail.Conflict, "a key named %q exists already in %s: revoke it first, or choose another name", name, path)
	}
	secret := make([]byte, keyBytes)
	if _, err := rand.Read(secret); err != nil {
		return "", fmt.Errorf("making a key: %w", err)
	}
	key := KeyPrefix + base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(key))
	keys = append(keys, StoredKey{Name: name, Roles: roles, SHA256: hex.EncodeToString(sum[:]), Created: time.Now().UTC().Truncate(time.Second)})
	if err := writeKeyFile(path, keys); err != nil {
		return "", err
	}
	return key, nil
}

// RevokeKey removes the key named name from the file at path. A running
// stockflow refuses it once it has read the file again (SIGHUP).
func RevokeKey(path, name string) error {
	keys, err := ReadKeyFile(path)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(keys, func(k StoredKey) bool { return k.Name == name })
	if i < 0 {
		return fail.Errorf(fail.NotFound, "no key named %q in %s", name, path)
	}
	return writeKeyFile(path, slices.Delete(keys, i, i+1))
}

// Keys are the API keys a server accepts, read from their file, and read
// again by Reload.
type Keys struct {
	path string
	set  atomic.Pointer[[]loadedKey]
}

type loadedKey struct {
	name  string
	roles []Role
	hash  [sha256.Size]byte
}

// LoadKeys reads the key file at path.
func LoadKeys(path string) (*Keys, error) {
	k := &Keys{path: path}
	if _, err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Path is the key file's.
func (k *Keys) Path() string { return k.path }

// Reload reads the key file again and returns how many keys it holds. On
// an error the keys read before stay in force.
func (k *Keys) Reload() (int, error) {
	stored, err := ReadKeyFile(k.path)
	if err != nil {
		return 0, err
	}
	set := make([]loadedKey, len(stored))
	for i, s := range stored {
		set[i] = loadedKey{name: s.Name, roles: s.Roles}
		hex.Decode(set[i].hash[:], []byte(s.SHA256)) // checked by ReadKeyFile
	}
	k.set.Store(&set)
	return len(set), nil
}

// Authenticate returns the caller of key. Every stored hash is compared,
// each in constant time, so that the time taken says nothing of which key
// was near.
func (k *Keys) Authenticate(key string) (Principal, error) {
	if !strings.HasPrefix(key, KeyPrefix) {
		return Principal{}, refuse(UnknownKey, "not an API key")
	}
	sum := sha256.Sum256([]byte(key))
	var found *loadedKey
	set := *k.set.Load()
	for i := range set {
		if subtle.ConstantTimeCompare(sum[:], set[i].hash[:]) == 1 {
			found = &set[i]
		}
	}
	if found == nil {
		return Principal{}, refuse(UnknownKey, "no such API key (revoked, or never made)")
	}
	return Principal{Name: found.name, Roles: found.roles}, nil
}
