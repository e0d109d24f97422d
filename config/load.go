package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// TenantFileName is the config file inside each tenant's folder.
const TenantFileName = "tenant.config.json"

// LoadTenants reads <name>/tenant.config.json for every folder of fsys (folders starting with
// "." are skipped; files at the top are ignored). A folder's name must equal its tenantId. It is
// all-or-nothing: any error returns no configs, and every problem is reported (errors.Join).
// Host and API key conflicts between tenants are found by NewIndex.
func LoadTenants(fsys fs.FS) ([]*TenantConfig, []string, error) {
	return finishLoad(loadTenants(fsys, path.Join))
}

// LoadTenantsDir is LoadTenants over the directory dir, with dir in messages. A missing dir
// gives an error matching fs.ErrNotExist, so that the caller can fall back to the embedded
// defaults:
//
//	cfgs, warns, err := config.LoadTenantsDir(env.TenantsDir)
//	if errors.Is(err, fs.ErrNotExist) {
//		cfgs, warns, err = config.LoadTenants(tenants.Defaults())
//	}
func LoadTenantsDir(dir string) ([]*TenantConfig, []string, error) {
	return finishLoad(loadTenantsDir(dir))
}

// ValidateDir reports everything wrong with the tenants in dir: every parse error of every
// file, one error each, and the conflicts NewIndex would refuse. Empty means valid.
func ValidateDir(dir string) []error {
	cfgs, partial, errs := validateTenantsDir(dir)
	// Index the files that parsed and those with errors elsewhere than their tenantId, to
	// report conflicts in the same run.
	_, err := NewIndex(append(cfgs, partial...))
	return append(flatten(errs), flatten([]error{err})...)
}

// validateTenantsDir is loadTenantsDir for ValidateDir: it also returns the configs of files with
// errors, decoded as far as they could be, when their tenantId is valid.
func validateTenantsDir(dir string) (cfgs, partial []*TenantConfig, errs []error) {
	cfgs, _, errs = loadTenantsDirWith(dir, func(cfg *TenantConfig) { partial = append(partial, cfg) })
	return cfgs, partial, errs
}

func loadTenantsDir(dir string) ([]*TenantConfig, []string, []error) {
	return loadTenantsDirWith(dir, nil)
}

func loadTenantsDirWith(dir string, onPartial func(*TenantConfig)) ([]*TenantConfig, []string, []error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, nil, []error{fmt.Errorf("tenants directory: %w", err)}
	}
	if !st.IsDir() {
		return nil, nil, []error{fmt.Errorf("tenants directory %s: not a directory", dir)}
	}
	join := func(elem ...string) string { return filepath.Join(append([]string{dir}, elem...)...) }
	return loadTenantsWith(os.DirFS(dir), join, onPartial)
}

// loadTenants returns every config that parsed, the warnings and every error; name builds the
// file names used in messages.
func loadTenants(fsys fs.FS, name func(elem ...string) string) ([]*TenantConfig, []string, []error) {
	return loadTenantsWith(fsys, name, nil)
}

// loadTenantsWith is loadTenants that hands onPartial (when not nil) each config that had errors
// but a valid tenantId matching its folder, decoded as far as it could be.
func loadTenantsWith(fsys fs.FS, name func(elem ...string) string, onPartial func(*TenantConfig)) ([]*TenantConfig, []string, []error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, nil, []error{fmt.Errorf("read tenants directory: %w", err)}
	}
	var (
		cfgs     []*TenantConfig
		warnings []string
		errs     []error
	)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		// Stat rather than e.IsDir(), so that a symlinked tenant folder counts.
		if st, err := fs.Stat(fsys, e.Name()); err != nil || !st.IsDir() {
			continue
		}
		file := name(e.Name(), TenantFileName)
		data, err := fs.ReadFile(fsys, path.Join(e.Name(), TenantFileName))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		cfg, warns, perrs := parseTenant(file, data)
		warnings = append(warnings, warns...)
		errs = append(errs, perrs...)
		// The folder rule is checked even when the file has other errors (all in one run), but
		// not over a tenantId that is itself invalid: that has its own error.
		if cfg != nil && ValidTenantID(cfg.TenantID) && cfg.TenantID != e.Name() {
			errs = append(errs, &FieldError{File: file, Path: "tenantId", Msg: fmt.Sprintf("must equal its folder name %q (got %q)", e.Name(), cfg.TenantID)})
			continue
		}
		if len(perrs) > 0 {
			if onPartial != nil && cfg != nil && ValidTenantID(cfg.TenantID) {
				onPartial(cfg)
			}
			continue
		}
		cfgs = append(cfgs, cfg)
	}
	if len(cfgs) == 0 && len(errs) == 0 {
		dir := name()
		if dir == "" {
			dir = "."
		}
		errs = append(errs, fmt.Errorf("%s: no <tenant>/%s found", dir, TenantFileName))
	}
	return cfgs, warnings, errs
}

func finishLoad(cfgs []*TenantConfig, warnings []string, errs []error) ([]*TenantConfig, []string, error) {
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	return cfgs, warnings, nil
}

// flatten splits joined errors into their parts, so that each problem is one entry.
func flatten(errs []error) []error {
	var out []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			out = append(out, flatten(j.Unwrap())...)
			continue
		}
		out = append(out, err)
	}
	return out
}
