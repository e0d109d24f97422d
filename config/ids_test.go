package config

import (
	"regexp"
	"strings"
	"testing"
)

// ValidDocID is DocIDPattern plus "no ..": the pattern is what the ingest_docs schema publishes.
func TestValidDocID(t *testing.T) {
	re := regexp.MustCompile(DocIDPattern)
	for _, id := range []string{"", "a", "doc-1", "A.b_c:d-e", "9", ".a", "-a", "_a", "a..b", "a/b", "a b", "é", strings.Repeat("a", 128), strings.Repeat("a", 129), "a\x00"} {
		want := re.MatchString(id) && !strings.Contains(id, "..")
		if got := ValidDocID(id); got != want {
			t.Errorf("ValidDocID(%q) = %v, want %v", id, got, want)
		}
		if (CheckDocID(id) == nil) != want {
			t.Errorf("CheckDocID(%q) disagrees with ValidDocID", id)
		}
	}
}
