package config

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// digestPrefix marks a stored API key digest in tenant configs.
const digestPrefix = "sha256:"

// APIKeyPrefix starts every key NewAPIKey makes, so that leaked keys are easy to recognise
// (and to grep for).
const APIKeyPrefix = "ck_"

// NewAPIKey returns a new random API key (APIKeyPrefix + 32 random bytes, base64url without
// padding) and the digest to store in the tenant's apiKeys. Only the digest is ever stored.
func NewAPIKey() (key, digest string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generate API key: %w", err)
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key), nil
}

// HashAPIKey returns the stored form of key: "sha256:" followed by the lower-case hex SHA-256
// digest. A fast hash is enough because keys are long random strings, not passwords.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return digestPrefix + hex.EncodeToString(sum[:])
}
