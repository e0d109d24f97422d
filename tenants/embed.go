// Package tenants holds the tenant configs shipped with the binary: one
// <tenant>/tenant.config.json per folder (the README's "Tenant config"). The server uses them
// when its tenants directory does not exist, so that `crispy serve` works with no setup.
package tenants

import (
	"embed"
	"io/fs"
)

// files is read-only: embed.FS cannot be modified, so this is not mutable package state.
//
//go:embed */tenant.config.json
var files embed.FS

// Defaults returns the embedded tenant configs, laid out as config.LoadTenants expects.
func Defaults() fs.FS { return files }
