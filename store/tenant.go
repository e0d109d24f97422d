package store

import "github.com/crispy-enigma/crispy/config"

// ErrInvalidTenant is returned (wrapped, with the ID quoted) for a tenant ID outside ^[a-z0-9-]{1,63}$.
var ErrInvalidTenant = config.ErrInvalidTenantID

// ValidateTenantID reports whether id is a well-formed tenant ID (config.ValidTenantID, the one
// definition).
func ValidateTenantID(id string) error { return config.CheckTenantID(id) }
