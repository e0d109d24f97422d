package config

import (
	"errors"
	"fmt"
)

// This file is the one home of the identifier syntaxes every package checks. A tenant ID is safe
// as a NATS subject token, as the first token of a KV key and as a directory name; a session ID is
// safe as a subject token and as part of a grain identity. Other packages call these, never a
// pattern of their own.

// MaxUserIDLen bounds a client-given user ID (rate-limit identity, audit records).
const MaxUserIDLen = 256

// ErrInvalidTenantID is returned (wrapped, with the ID quoted) for a tenant ID outside
// [a-z0-9-]{1,63}.
var ErrInvalidTenantID = errors.New("invalid tenant id")

// ValidTenantID reports whether id matches [a-z0-9-]{1,63}. It has no '.', '*', '>', '/' or
// whitespace, which is what makes it safe in subjects, keys and paths.
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

// CheckTenantID is ValidTenantID as an error wrapping ErrInvalidTenantID.
func CheckTenantID(id string) error {
	if !ValidTenantID(id) {
		return fmt.Errorf("%w: %q (want ^[a-z0-9-]{1,63}$)", ErrInvalidTenantID, id)
	}
	return nil
}

// SessionIDSyntax is how messages describe a valid session ID.
const SessionIDSyntax = "[A-Za-z0-9_-]{1,128}"

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
