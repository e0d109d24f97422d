package console

import "testing"

func TestKindOf(t *testing.T) {
	cases := []struct{ key, want string }{
		{"partition-activator/acme:s1$3f", "ChatSession"},
		{"partition-activator/acme:ratelimit:user:bob$a", "RateLimiter"},
		{"partition-activator/acme$b", "Budget"},
		{"partition-activator/acme:s1$3f/child$1", ""},
		{"partition-activator", ""},
		{"future$12", ""},
		{"partition-activator/$1", ""},
	}
	for _, c := range cases {
		if got := kindOf(c.key); got != c.want {
			t.Errorf("kindOf(%q) = %q, want %q", c.key, got, c.want)
		}
	}
}
