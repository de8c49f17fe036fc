// Package openapi checks stockflow's HTTP API against its description,
// docs/openapi.json (OpenAPI 3.1), the way internal/contract checks the
// messages against docs/asyncapi.json.
//
//   - Load reads the document with kin-openapi, checks it, and routes a
//     request to the operation that describes it with an http.ServeMux of
//     the document's paths: the same router, and the same patterns
//     ("POST /orders/{orderid}/items"), as stockflow's own, so that a
//     request is checked against the operation of the route that served
//     it, and the document's routes compare one to one with the routes
//     the services register (cmd/stockflow's tests).
//   - A Validator checks an exchange, a request and its answer: the
//     answer's status must be one the operation documents, its headers
//     and body must match that status's schemas, and a request the
//     document refuses must have been refused (4xx). Answers are checked
//     strictly: an object member the schema does not declare is a
//     mismatch, although the document leaves answers open (clients ignore
//     what they do not know), so that a field the code adds cannot go
//     undocumented. A request no route takes must be answered 404, or 405
//     when the path has routes for other methods, with an error body.
//     It records which routes and statuses were exercised (Coverage).
//
// The end-to-end tests hook a Validator into their HTTP client, so that
// every exchange they make is checked.
package openapi
