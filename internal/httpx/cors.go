package httpx

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// CORS lets the pages of other origins (a storefront's) call the API from
// a browser.
type CORS struct {
	origins []string // "*" alone: any
}

// NewCORS returns the CORS policy of origins, comma-separated:
// "https://shop.example,https://admin.example", or "*" for any origin.
// Each origin is a scheme and a host, with a port if need be, and nothing
// after it.
func NewCORS(origins string) (*CORS, error) {
	c := &CORS{}
	for _, o := range strings.Split(origins, ",") {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
			continue
		case o == "*":
			c.origins = append(c.origins, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("origin %q: want scheme://host[:port], as a browser sends it (https://shop.example)", o)
		}
		c.origins = append(c.origins, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	if len(c.origins) == 0 {
		return nil, fmt.Errorf("no origin in %q", origins)
	}
	if len(c.origins) > 1 && slices.Contains(c.origins, "*") {
		return nil, fmt.Errorf("%q: * stands alone", origins)
	}
	return c, nil
}

// CORS preflight answers: what a browser may send.
const (
	corsMethods = "GET, POST"
	corsHeaders = "Authorization, Content-Type, " + CorrelationHeader
	corsMaxAge  = 10 * 60 // seconds a browser may keep a preflight's answer
)

// allowed returns the Access-Control-Allow-Origin answer to origin, ""
// when it may not call.
func (c *CORS) allowed(origin string) string {
	if origin == "" {
		return ""
	}
	if c.origins[0] == "*" {
		return "*"
	}
	if slices.Contains(c.origins, strings.ToLower(origin)) {
		return origin
	}
	return ""
}

// Layer answers the preflight requests of the allowed origins itself (204,
// before any authentication: a browser sends no credentials with them),
// and marks the other answers to those origins as readable by them
// (errors too, so that a page can show a 401's message). A request of an
// origin not allowed is served without CORS headers, which the browser
// then refuses to hand to the page.
func (c *CORS) Layer(next http.Handler, _ string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		if origin != "" {
			h.Add("Vary", "Origin")
		}
		allow := c.allowed(origin)
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if allow == "" {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", allow)
		if !preflight {
			h.Set("Access-Control-Expose-Headers", CorrelationHeader)
			next.ServeHTTP(w, r)
			return
		}
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
		w.WriteHeader(http.StatusNoContent)
	})
}
