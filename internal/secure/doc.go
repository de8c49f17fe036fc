// Package secure holds what stockflow's links to its servers (PostgreSQL,
// Redis, NATS, Kafka) share: a TLS client configuration read from PEM
// files named in a URL's query (ca=, cert=, key=), errors that say plainly
// why a server's certificate was refused, and URLs fit to print, with
// their secrets hidden.
//
// The TLS itself is crypto/tls's, and each client library's own options
// carry it: nothing here speaks a protocol.
package secure
