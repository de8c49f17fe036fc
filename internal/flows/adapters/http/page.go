package http

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/stockflow/stockflow/internal/httpx"
)

// The page: plain HTML, CSS and JavaScript, drawing its own SVG; nothing
// is fetched from elsewhere.
//
//go:embed page
var pageFiles embed.FS

// security are the headers of the page and its assets: it runs only its
// own scripts and styles, and talks only to the server it came from.
func security(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// A new binary's page is used at once.
	h.Set("Cache-Control", "no-cache")
}

// page serves the page at /.
func page() http.Handler {
	index, err := pageFiles.ReadFile("page/index.html")
	if err != nil {
		panic(err) // embedded: cannot happen
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		security(w.Header())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(index)
	})
}

// assets serves the page's scripts and styles under /ui/.
func assets() http.Handler {
	sub, err := fs.Sub(pageFiles, "page")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if fi, err := fs.Stat(sub, name); err != nil || !fi.Mode().IsRegular() || name == "index.html" {
			httpx.Error(w, http.StatusNotFound, "no such file: "+r.URL.Path)
			return
		}
		security(w.Header())
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		files.ServeHTTP(w, r2)
	})
}
