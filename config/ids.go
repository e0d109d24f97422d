package config

// ValidTenantID reports whether id is a valid tenant ID: [a-z0-9-]{1,63}, so that it is safe in
// NATS subjects, KV keys and file paths.
func ValidTenantID(id string) bool { return tenantIDPattern.MatchString(id) }
