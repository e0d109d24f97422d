package config

import (
	"errors"
	"fmt"
	"strings"
)

// This file is the one home of the identifier syntaxes every package checks (tenant, session and
// document IDs). A tenant ID is safe
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

// DocIDPattern is a document ID's syntax: letters, digits and . _ : - ; starting with a letter or
// digit, so a docId is never ".", "..", an option-like "-x" or empty. ".." inside is refused too
// (ValidDocID): no path tricks anywhere a docId might one day name a file. /ingest, the documents
// routes and the ingest_docs tool all check it here.
const DocIDPattern = `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`

// MaxDocIDLen is DocIDPattern's length bound.
const MaxDocIDLen = 128

// ValidDocID reports whether id matches DocIDPattern and has no "..".
func ValidDocID(id string) bool {
	if len(id) == 0 || len(id) > MaxDocIDLen || strings.Contains(id, "..") {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != ':' && c != '-') {
			return false
		}
	}
	return true
}

// CheckDocID is ValidDocID as an error whose message names the rule (safe to show a client; the
// ID is quoted and truncated).
func CheckDocID(id string) error {
	if !ValidDocID(id) {
		shown := id
		if r := []rune(shown); len(r) > 64 {
			shown = string(r[:64]) + "…"
		}
		return fmt.Errorf("docId %q: must be 1-%d characters of letters, digits and . _ : - , start with a letter or digit, and not contain \"..\"", shown, MaxDocIDLen)
	}
	return nil
}
