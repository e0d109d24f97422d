package actors

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidID is returned for a tenant, session or user ID outside its allowed alphabet.
var ErrInvalidID = errors.New("invalid id")

// ValidTenantID reports whether id matches [a-z0-9-]{1,63}.
func ValidTenantID(id string) bool {
	if len(id) == 0 || len(id) > 63 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidSessionID reports whether id matches [A-Za-z0-9_-]{1,128}.
func ValidSessionID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// sessionIdentity is the ChatSession grain identity.
func sessionIdentity(tenantID, sessionID string) (string, error) {
	if !ValidTenantID(tenantID) {
		return "", fmt.Errorf("tenant %q: %w", tenantID, ErrInvalidID)
	}
	if !ValidSessionID(sessionID) {
		return "", fmt.Errorf("session %q: %w", sessionID, ErrInvalidID)
	}
	return tenantID + ":" + sessionID, nil
}

func parseSessionIdentity(identity string) (tenantID, sessionID string, err error) {
	tenantID, sessionID, ok := strings.Cut(identity, ":")
	if !ok {
		return "", "", fmt.Errorf("session identity %q: %w", identity, ErrInvalidID)
	}
	if _, err := sessionIdentity(tenantID, sessionID); err != nil {
		return "", "", err
	}
	return tenantID, sessionID, nil
}

// rateLimitIdentity is the RateLimiter grain identity <tenant>:ratelimit:<user>.
func rateLimitIdentity(tenantID, userID string) (string, error) {
	if !ValidTenantID(tenantID) {
		return "", fmt.Errorf("tenant %q: %w", tenantID, ErrInvalidID)
	}
	if userID == "" || len(userID) > 256 {
		return "", fmt.Errorf("user %q: %w", userID, ErrInvalidID)
	}
	return tenantID + ":ratelimit:" + userID, nil
}
