package store

import (
	"errors"
	"fmt"
	"regexp"
)

// ErrInvalidTenant is returned (wrapped, with the ID quoted) for a tenant ID outside ^[a-z0-9-]{1,63}$.
var ErrInvalidTenant = errors.New("invalid tenant id")

// tenantIDRe is the one definition of a tenant ID (docs/architecture.md). It has no '.', '*',
// '>', '/' or whitespace, which is what makes a tenant ID safe as a NATS subject token, as the first
// token of a KV key and as a directory name.
var tenantIDRe = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// ValidateTenantID reports whether id is a well-formed tenant ID.
func ValidateTenantID(id string) error {
	if !tenantIDRe.MatchString(id) {
		return fmt.Errorf("%w: %q (want ^[a-z0-9-]{1,63}$)", ErrInvalidTenant, id)
	}
	return nil
}
