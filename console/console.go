// Package console is the node's web console: a tenant console (playground, knowledge, usage,
// speech) served under /console/ on the API listener, and an operator view (members, grains,
// streams, projector lag, per-tenant HTTP series) under /operator/ on the admin listener.
//
// The pages are static ES modules embedded in the binary: no build step, no CDN, no inline script
// or style, so a strict Content-Security-Policy holds. The tenant console calls the public HTTP API
// like any client, with the tenant's key in a header; it has no endpoint of its own.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var files embed.FS

// csp allows only this origin: scripts and styles from files (never inline), media from blob: URLs
// (speech is fetched with the key in a header, then played from a blob), no framing.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
	"frame-ancestors 'none'; form-action 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// site serves the embedded files of one page set (tenant or operator) and the common ones.
type site struct {
	prefix string           // "/console/" or "/operator/"
	assets map[string]asset // by path below prefix; "" is the page itself
	api    http.Handler     // requests under prefix+"api/"; nil: none
}

// newSite loads static/<dir>/* and static/common/* (as common/*).
func newSite(prefix, dir string, api http.Handler) (*site, error) {
	s := &site{prefix: prefix, assets: map[string]asset{}, api: api}
	load := func(root, under string) error {
		return fs.WalkDir(files, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := files.ReadFile(p)
			if err != nil {
				return err
			}
			name := under + strings.TrimPrefix(p, root+"/")
			ct := mime.TypeByExtension(path.Ext(p))
			switch path.Ext(p) { // the platform's MIME table may lack these or name them differently
			case ".js":
				ct = "text/javascript; charset=utf-8"
			case ".css":
				ct = "text/css; charset=utf-8"
			case ".html":
				ct = "text/html; charset=utf-8"
			case ".svg":
				ct = "image/svg+xml"
			}
			sum := sha256.Sum256(b)
			s.assets[name] = asset{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
			return nil
		})
	}
	if err := load("static/"+dir, ""); err != nil {
		return nil, fmt.Errorf("console: load %s: %w", dir, err)
	}
	if err := load("static/common", "common/"); err != nil {
		return nil, fmt.Errorf("console: load common: %w", err)
	}
	page, ok := s.assets["index.html"]
	if !ok {
		return nil, fmt.Errorf("console: static/%s/index.html missing", dir)
	}
	s.assets[""] = page
	return s, nil
}

// securityHeaders go on every answer of the console, assets and API alike.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
}

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	p := r.URL.Path
	if p == strings.TrimSuffix(s.prefix, "/") {
		http.Redirect(w, r, s.prefix, http.StatusMovedPermanently)
		return
	}
	rest, ok := strings.CutPrefix(p, s.prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if s.api != nil && strings.HasPrefix(rest, "api/") {
		s.api.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	a, ok := s.assets[rest]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	// Revalidate every time: the files change with the binary and are small; an ETag match is a 304.
	h.Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(a.body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(a.body)
}

// TenantHandler serves the tenant console under /console/ on the API listener. It answers only
// GET/HEAD of embedded files: the pages talk to the public API with the tenant's key in a header.
func TenantHandler() http.Handler {
	s, err := newSite("/console/", "tenant", nil)
	if err != nil {
		panic(err) // the files are embedded at build time: a missing page is a build defect
	}
	return s
}
