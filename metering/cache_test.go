package metering

import (
	"strings"
	"testing"

	"github.com/crispy-enigma/crispy/gateway"
	"github.com/crispy-enigma/crispy/store"
)

func TestCacheKey(t *testing.T) {
	msgs := []gateway.Message{{Role: "user", Content: "hello world"}}
	base := CacheKey("acme", "m", 0, msgs)
	tests := []struct {
		name string
		key  string
		same bool
	}{
		{"whitespace-normalized", CacheKey("acme", "m", 0, []gateway.Message{{Role: "user", Content: " hello\n\tworld "}}), true},
		{"other tenant", CacheKey("acme2", "m", 0, msgs), false},
		{"other model", CacheKey("acme", "m2", 0, msgs), false},
		{"other maxTokens", CacheKey("acme", "m", 10, msgs), false},
		{"other system", CacheKey("acme", "m", 0, append([]gateway.Message{{Role: "system", Content: "be brief"}}, msgs...)), false},
		{"other role", CacheKey("acme", "m", 0, []gateway.Message{{Role: "assistant", Content: "hello world"}}), false},
		// Length prefixes: moving text between fields never yields the same material.
		{"field boundary", CacheKey("acme", "m", 0, []gateway.Message{{Role: "user", Content: "hello"}, {Role: "user", Content: "world"}}), false},
	}
	for _, tt := range tests {
		if (tt.key == base) != tt.same {
			t.Errorf("%s: key equal = %v, want %v", tt.name, tt.key == base, tt.same)
		}
		if err := store.ValidateKey(tt.key); err != nil || !strings.HasPrefix(tt.key, "chat.") {
			t.Errorf("%s: key %q is not a valid chat.<sha256> KV key: %v", tt.name, tt.key, err)
		}
	}
}
