package store

import (
	"strings"
	"testing"
)

// FuzzValidateKey checks the property the tenant prefix relies on: whatever a tenant's key is, an
// accepted key never contains a NATS wildcard, whitespace or an empty token, so "<tenant>.<key>"
// always has the tenant ID as its whole first token.
func FuzzValidateKey(f *testing.F) {
	for _, seed := range []string{"x", "b.x", "search.0123", "a*", ">", "x..y", ".x", "x.", "a b", "a\x00", "café", "a:b", "a/b=c_d-e"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if ValidateKey(key) != nil {
			return
		}
		if strings.ContainsAny(key, "*> \t\r\n\x00:") {
			t.Fatalf("accepted key %q holds a wildcard, whitespace or ':'", key)
		}
		for _, tok := range strings.Split(key, ".") {
			if tok == "" {
				t.Fatalf("accepted key %q has an empty token", key)
			}
		}
		full := "tenant-1." + key
		if first, _, _ := strings.Cut(full, "."); first != "tenant-1" {
			t.Fatalf("key %q changes the first token to %q", key, first)
		}
	})
}
