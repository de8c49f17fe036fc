// Package docs holds the documents that describe stockflow's interfaces,
// embedded so that the binary can serve them: openapi.json, the HTTP API
// (OpenAPI 3.1), served at GET /openapi.json and checked against the
// routes by cmd/stockflow's tests and against every exchange of the
// end-to-end tests; and asyncapi.json, the messages between services,
// checked by internal/contract.
package docs

import _ "embed"

// OpenAPI is docs/openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// AsyncAPI is docs/asyncapi.json: every message crossing a service
// boundary, its channel and payload, and who sends and receives it.
//
//go:embed asyncapi.json
var AsyncAPI []byte
