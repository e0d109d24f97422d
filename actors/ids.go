package actors

import (
	"errors"
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/config"
)

// ErrInvalidID is returned for a tenant, session or user ID outside its allowed alphabet.
var ErrInvalidID = errors.New("invalid id")

// ValidTenantID is config.ValidTenantID, the one definition of the syntax, under the name the
// grains call it by.
func ValidTenantID(id string) bool { return config.ValidTenantID(id) }

// sessionIdentity is the ChatSession grain identity.
func sessionIdentity(tenantID, sessionID string) (string, error) {
	if !ValidTenantID(tenantID) {
		return "", fmt.Errorf("tenant %q: %w", tenantID, ErrInvalidID)
	}
	if !config.ValidSessionID(sessionID) {
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
	if userID == "" || len(userID) > config.MaxUserIDLen {
		return "", fmt.Errorf("user %q: %w", userID, ErrInvalidID)
	}
	return tenantID + ":ratelimit:" + userID, nil
}
