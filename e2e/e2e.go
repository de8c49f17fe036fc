// Package e2e holds stockflow's end-to-end tests: they build the real
// binary once, start it with "stockflow up" on a free port and a temporary
// data directory, and talk to it over HTTP only, as a client would. They
// cover the book's API tests, the API's answers to bad input, restarts
// (graceful and kill -9) and concurrent allocation.
//
// Run them with:
//
//	go test -race -count=1 ./e2e/
//
// The package has no code of its own besides its tests.
package e2e
