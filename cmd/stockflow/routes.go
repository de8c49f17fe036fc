package main

import "github.com/stockflow/stockflow/internal/auth"

// routeRoles is the role each route of each service needs when
// authentication is on (auth.Policy): a caller with it may call the route,
// and any GET is open to the read role too. A route missing here is
// refused to every caller but a GET's to read; TestRouteRoles checks that
// every route registered has its line.
var routeRoles = map[string]auth.Role{
	// allocation
	"POST /add_batch":             auth.Stock,
	"POST /allocate":              auth.Stock,
	"POST /change_batch_quantity": auth.Stock,
	"POST /deallocate":            auth.Stock,
	"GET /allocations/{orderid}":  auth.Stock,
	"GET /batches/{batchref}":     auth.Stock,
	"GET /products/{sku}":         auth.Stock,
	"GET /flows":                  auth.Ops,
	"GET /flows/stream":           auth.Ops,
	"GET /flows/recent":           auth.Ops,
	"GET /flows/map":              auth.Ops,
	// orders: what a storefront calls
	"POST /orders":                  auth.Shop,
	"GET /orders":                   auth.Shop,
	"GET /orders/{orderid}":         auth.Shop,
	"POST /orders/{orderid}/items":  auth.Shop,
	"POST /orders/{orderid}/place":  auth.Shop,
	"POST /orders/{orderid}/cancel": auth.Shop,
	// warehouse
	"POST /warehouse/batches/{batchref}/count":  auth.Stock,
	"POST /warehouse/batches/{batchref}/damage": auth.Stock,
	"GET /warehouse/batches/{batchref}":         auth.Stock,
	"GET /warehouse/shipments/{orderid}":        auth.Stock,
	// crm and notifications: read only
	"GET /customers":            auth.Read,
	"GET /customers/{customer}": auth.Read,
	"GET /notifications":        auth.Read,
	"GET /notifications/{id}":   auth.Read,
	// the process's own: the dead-letter console of the services it runs
	"GET /dead-letters":                         auth.Ops,
	"GET /dead-letters/list":                    auth.Ops,
	"GET /dead-letters/{service}/{id}":          auth.Ops,
	"POST /dead-letters/{service}/{id}/retry":   auth.Ops,
	"POST /dead-letters/{service}/{id}/discard": auth.Ops,
	"POST /dead-letters/retry":                  auth.Ops,
	"POST /dead-letters/discard":                auth.Ops,
	"GET /metrics":                              auth.Ops, // open unless --metrics-auth
}

// openRoutes are the routes anyone may call: the probes, the API's
// description, the flows page and its scripts (which hold no data: the
// page asks for a key when the API it calls answers 401), and the metrics
// unless metricsAuth.
func openRoutes(metricsAuth bool) map[string]bool {
	return map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /openapi.json": true, "GET /metrics": !metricsAuth,
		"GET /{$}": true, "GET /ui/{file}": true}
}
