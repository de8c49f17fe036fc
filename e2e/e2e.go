// Package e2e holds stockflow's end-to-end tests: they build the real
// binary once, start it with "stockflow up" on a free port and a temporary
// data directory, and talk to it over HTTP only, as a client would. They
// cover the book's API tests, the API's answers to bad input, restarts
// (graceful and kill -9) and concurrent allocation.
//
// The production tests (production_test.go) run "stockflow serve
// allocation" on PostgreSQL and Redis pub/sub, as separate processes: the
// book's chapter 11 end-to-end test, line_allocated for every allocation,
// a Redis outage, poison messages and "stockflow dead-letters", two
// instances on one database, "stockflow migrate", the STOCKFLOW_*
// variables and /metrics. Each test gets a database of its own on the
// test PostgreSQL (testenv.Postgres) and a private redis-server on a free
// port; without them the tests are skipped, unless
// STOCKFLOW_REQUIRE_SERVICES=1.
//
// The shop's tests (shop_test.go, shop_badinput_test.go) drive the five
// services through the flows: cart to dispatch, VIPs, damage,
// cancelling, and a service stopped and started again; once in one process
// ("stockflow up") and once as five processes ("stockflow serve NAME") on
// Redis Streams.
//
// Run them with:
//
//	go test -race -count=1 ./e2e/
//
// The package has no code of its own besides its tests.
package e2e
