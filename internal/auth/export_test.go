package auth

import "time"

// SetNow sets the clock of j, for tests.
func SetNow(j *JWKS, now func() time.Time) { j.now = now }
