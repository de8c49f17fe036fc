// Package docs holds the documents stockflow serves or checks itself
// against: the AsyncAPI contract of its messages.
package docs

import _ "embed"

// AsyncAPI is docs/asyncapi.json: every message crossing a service
// boundary, its channel and payload, and who sends and receives it.
//
//go:embed asyncapi.json
var AsyncAPI []byte
