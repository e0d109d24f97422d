package actors

import (
	"errors"
	"strings"
	"testing"
)

func TestSessionIdentity(t *testing.T) {
	tests := []struct {
		tenant, session string
		ok              bool
		why             string
	}{
		{"acme", "s-1_A", true, ""},
		{"acme", strings.Repeat("a", 128), true, "128 characters is the maximum"},
		{"acme", strings.Repeat("a", 129), false, "too long"},
		{"acme", "", false, "empty session"},
		{"acme", "a.b", false, "a dot would add a subject token"},
		{"acme", "a*", false, "wildcard"},
		{"acme", "a>", false, "wildcard"},
		{"acme", "a b", false, "space"},
		{"acme", "a:b", false, "colon separates the identity"},
		{"Acme", "s", false, "tenant IDs are lowercase"},
		{"", "s", false, "empty tenant"},
		{strings.Repeat("t", 64), "s", false, "tenant too long"},
	}
	for _, tt := range tests {
		id, err := sessionIdentity(tt.tenant, tt.session)
		if (err == nil) != tt.ok {
			t.Errorf("sessionIdentity(%q, %q) = %q, %v; want ok=%v (%s)", tt.tenant, tt.session, id, err, tt.ok, tt.why)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("error %v does not wrap ErrInvalidID", err)
		}
	}
}

// FuzzSessionIdentity: any accepted pair round-trips through the identity and gives a subject of
// exactly three literal tokens.
func FuzzSessionIdentity(f *testing.F) {
	for _, s := range [][2]string{{"acme", "s1"}, {"a-b", "X_y-9"}, {"a", "a.b"}, {"a:b", "c"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, tenant, session string) {
		id, err := sessionIdentity(tenant, session)
		if err != nil {
			return
		}
		gotTenant, gotSession, err := parseSessionIdentity(id)
		if err != nil || gotTenant != tenant || gotSession != session {
			t.Fatalf("round trip of %q: %q %q %v", id, gotTenant, gotSession, err)
		}
		subject := chatSubject(tenant, session)
		tokens := strings.Split(subject, ".")
		if len(tokens) != 3 || strings.ContainsAny(subject, "*> \t\r\n") {
			t.Fatalf("subject %q is not three literal tokens", subject)
		}
	})
}
