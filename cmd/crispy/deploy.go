package main

// `crispy tenants deploy|diff|rollback|history|new`: per-tenant deployment against the tenants
// JetStream KV bucket of a running node or cluster (store.TenantStore). Every node watches the
// bucket and swaps its tenant index when it changes (watchDeployedTenants).
//
// The CLI reaches the bucket through a NATS client port: --nats-url (default
// nats://127.0.0.1:4222, or CRISPY_NATS_URL). A single node's embedded NATS has no client port
// unless it is started with --nats-listen 127.0.0.1:4222; nodes that use an external NATS
// (--nats-url) are reached through that NATS.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/store"
)

// exitError makes main exit with code instead of 1 (diff's 1 = drift, 2 = error).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

// defaultDeployNATSURL is where the CLI looks for a node's NATS when neither --nats-url nor
// CRISPY_NATS_URL is given: a node started with --nats-listen 127.0.0.1:4222.
const defaultDeployNATSURL = "nats://127.0.0.1:4222"

// deployFlags are the flags every deployment command shares.
type deployFlags struct {
	dir     string
	natsURL string
	timeout time.Duration
}

func (f *deployFlags) bind(cmd *cobra.Command, withNATS bool) {
	cmd.Flags().StringVar(&f.dir, "dir", "tenants", "the tenants directory (<dir>/<tenant>/tenant.config.json)")
	if !withNATS {
		return
	}
	def := defaultDeployNATSURL
	if v := strings.TrimSpace(config.Getenv("CRISPY_NATS_URL")); v != "" {
		def = v
	}
	cmd.Flags().StringVar(&f.natsURL, "nats-url", def, "NATS URL of the running node or cluster (a single node needs serve --nats-listen) (env CRISPY_NATS_URL)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
}

// connect opens the node's tenants bucket; close releases the connection.
func (f *deployFlags) connect(ctx context.Context) (ts *store.TenantStore, js jetstream.JetStream, closeFn func(), err error) {
	nc, err := nats.Connect(f.natsURL, nats.Name("crispy-tenants-cli"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connect to NATS at %s (a single node needs `serve --nats-listen 127.0.0.1:4222`): %w", f.natsURL, err)
	}
	if js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	if ts, err = store.BindTenantStore(ctx, js); err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return ts, js, nc.Close, nil
}

// writeMeta records who deploys and from where.
func writeMeta() store.WriteMeta {
	m := store.WriteMeta{}
	if u, err := user.Current(); err == nil {
		m.By = u.Username
	} else {
		m.By = config.Getenv("USER")
	}
	m.From, _ = os.Hostname()
	return m
}

// addDeployCommands registers the deployment commands under `crispy tenants`.
func addDeployCommands(tenantsCmd *cobra.Command) {
	tenantsCmd.AddCommand(newDeployCmd(), newDiffCmd(), newRollbackCmd(), newHistoryCmd(), newScaffoldCmd())
}

func newDeployCmd() *cobra.Command {
	var (
		f   deployFlags
		all bool
	)
	cmd := &cobra.Command{
		Use:   "deploy [TENANT...|--all]",
		Short: "Validate local tenant configs and deploy them to the running cluster (nodes reload without restart)",
		Long: "Validates <dir>/<tenant>/tenant.config.json and the whole tenant index it would make with what is\n" +
			"deployed (hosts and API keys claimed twice), and refuses before writing anything if any check fails.\n" +
			"Unchanged tenants are not rewritten. Each write is a new revision of the tenants bucket and an audit event.",
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := tenantArgs(args, all)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			return runDeploy(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), f, names)
		},
	}
	f.bind(cmd, true)
	cmd.Flags().BoolVar(&all, "all", false, "deploy every tenant of --dir")
	return cmd
}

// tenantArgs returns the named tenants, or nil for --all.
func tenantArgs(args []string, all bool) ([]string, error) {
	switch {
	case all && len(args) > 0:
		return nil, errors.New("name tenants or give --all, not both")
	case !all && len(args) == 0:
		return nil, errors.New("name at least one tenant, or give --all")
	case all:
		return nil, nil
	}
	for _, a := range args {
		if !config.ValidTenantID(a) {
			return nil, fmt.Errorf("%q: tenant IDs match [a-z0-9-]{1,63}", a)
		}
	}
	return args, nil
}

// loadLocal parses the named tenants' files (all of dir for nil names). A tenant's folder name must
// equal its tenantId.
func loadLocal(dir string, names []string, stderr io.Writer) ([]*config.TenantConfig, error) {
	var (
		cfgs  []*config.TenantConfig
		warns []string
		err   error
	)
	if names == nil {
		cfgs, warns, err = config.LoadTenantsDir(dir)
	} else {
		var errs []error
		for _, name := range names {
			file := filepath.Join(dir, name, config.TenantFileName)
			data, rerr := os.ReadFile(file)
			if rerr != nil {
				errs = append(errs, rerr)
				continue
			}
			c, w, perr := config.ParseTenantConfig(file, data)
			warns = append(warns, w...)
			switch {
			case perr != nil:
				errs = append(errs, perr)
			case c.TenantID != name:
				errs = append(errs, fmt.Errorf("%s: tenantId: must equal its folder name %q (got %q)", file, name, c.TenantID))
			default:
				cfgs = append(cfgs, c)
			}
		}
		err = errors.Join(errs...)
	}
	for _, w := range warns {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return cfgs, err
}

// deployedState is what the bucket holds: the live revisions and their parsed configs.
type deployedState struct {
	revs map[string]store.TenantRevision
	cfgs map[string]*config.TenantConfig
	bad  map[string]error // deployed values that no longer parse
}

func readDeployed(ctx context.Context, ts *store.TenantStore) (*deployedState, error) {
	live, err := ts.List(ctx)
	if err != nil {
		return nil, err
	}
	st := &deployedState{revs: map[string]store.TenantRevision{}, cfgs: map[string]*config.TenantConfig{}, bad: map[string]error{}}
	for _, r := range live {
		st.revs[r.TenantID] = r
		if c, err := r.Config(); err != nil {
			st.bad[r.TenantID] = err
		} else {
			st.cfgs[r.TenantID] = c
		}
	}
	return st, nil
}

// checkIndex indexes the deployed configs with replace applied on top, as every node will after
// the write; it refuses a deployed value that no longer parses unless replace overwrites it.
func (st *deployedState) checkIndex(replace ...*config.TenantConfig) error {
	merged := make(map[string]*config.TenantConfig, len(st.cfgs)+len(replace))
	for id, c := range st.cfgs {
		merged[id] = c
	}
	over := map[string]bool{}
	for _, c := range replace {
		merged[c.TenantID] = c
		over[c.TenantID] = true
	}
	var errs []error
	for id, err := range st.bad {
		if !over[id] {
			errs = append(errs, fmt.Errorf("deployed tenant %q does not parse (deploy a fixed config for it): %w", id, err))
		}
	}
	cfgs := make([]*config.TenantConfig, 0, len(merged))
	for _, c := range merged {
		cfgs = append(cfgs, c)
	}
	if _, err := config.NewIndex(cfgs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// expectedRevision is the tenant's latest revision including a delete marker (0: never written),
// which a write must name.
func expectedRevision(ctx context.Context, ts *store.TenantStore, st *deployedState, id string) (uint64, error) {
	if r, ok := st.revs[id]; ok {
		return r.Revision, nil
	}
	cur, err := ts.Current(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	return cur.Revision, err
}

func runDeploy(ctx context.Context, stdout, stderr io.Writer, f deployFlags, names []string) error {
	local, err := loadLocal(f.dir, names, stderr)
	if err != nil {
		return fmt.Errorf("refusing to deploy, nothing was written:\n%w", err)
	}
	ts, js, closeNATS, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer closeNATS()
	st, err := readDeployed(ctx, ts)
	if err != nil {
		return err
	}
	expect := map[string]uint64{}
	for _, c := range local {
		if expect[c.TenantID], err = expectedRevision(ctx, ts, st, c.TenantID); err != nil {
			return err
		}
	}
	if err := st.checkIndex(local...); err != nil {
		return fmt.Errorf("refusing to deploy, nothing was written: the tenant index would not load:\n%w", err)
	}
	ledger, lerr := store.BindLedger(ctx, js)
	if lerr != nil {
		fmt.Fprintf(stderr, "warning: audit events are not recorded: %v\n", lerr)
	}
	slices.SortFunc(local, func(a, b *config.TenantConfig) int { return strings.Compare(a.TenantID, b.TenantID) })
	var changed []*config.TenantConfig
	for _, c := range local {
		value, err := store.CanonicalTenantConfig(c)
		if err != nil {
			return err
		}
		if cur, ok := st.revs[c.TenantID]; ok && cur.Digest == store.Digest(value) {
			fmt.Fprintf(stdout, "%s: unchanged (revision %d, digest %s)\n", c.TenantID, cur.Revision, cur.ShortDigest())
			continue
		}
		changed = append(changed, c)
	}
	// One atomic commit: every changed tenant is written, or none is (a tenant changed since it was
	// validated, the connection failed), and nodes apply them as one index.
	revs, err := ts.DeployBatch(ctx, changed, expect, writeMeta())
	if err != nil {
		return fmt.Errorf("deploy: %w; nothing was written (re-run to validate against the new state)", err)
	}
	for _, rev := range revs {
		fmt.Fprintf(stdout, "%s: deployed revision %d, digest %s\n", rev.TenantID, rev.Revision, rev.ShortDigest())
		audit(ctx, ledger, stderr, rev, expect[rev.TenantID])
	}
	return nil
}

func audit(ctx context.Context, ledger *store.Ledger, stderr io.Writer, rev store.TenantRevision, previous uint64) {
	if ledger == nil {
		return
	}
	if err := ledger.Append(ctx, store.TenantAuditEvent(rev, previous)); err != nil {
		fmt.Fprintf(stderr, "warning: %s revision %d: audit event not recorded: %v\n", rev.TenantID, rev.Revision, err)
	}
}

func newDiffCmd() *cobra.Command {
	var (
		f   deployFlags
		all bool
	)
	cmd := &cobra.Command{
		Use:   "diff [TENANT...|--all]",
		Short: "Show field-level drift between local tenant configs and what is deployed; exit 0 none, 1 drift, 2 error",
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := tenantArgs(args, all)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			drift, err := runDiff(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), f, names)
			switch {
			case err != nil:
				return &exitError{code: 2, err: err}
			case drift:
				return &exitError{code: 1, err: errors.New("drift between local and deployed tenant configs")}
			}
			return nil
		},
	}
	f.bind(cmd, true)
	cmd.Flags().BoolVar(&all, "all", false, "compare every tenant of --dir, and report deployed tenants missing from it")
	return cmd
}

// runDiff prints the drift of each tenant and reports whether there is any.
func runDiff(ctx context.Context, stdout, stderr io.Writer, f deployFlags, names []string) (bool, error) {
	local, err := loadLocal(f.dir, names, stderr)
	if err != nil {
		return false, err
	}
	ts, _, closeNATS, err := f.connect(ctx)
	if err != nil {
		return false, err
	}
	defer closeNATS()
	live, err := ts.List(ctx)
	if err != nil {
		return false, err
	}
	deployed := map[string]store.TenantRevision{}
	for _, r := range live {
		deployed[r.TenantID] = r
	}
	localByID := map[string]*config.TenantConfig{}
	ids := []string{}
	for _, c := range local {
		localByID[c.TenantID] = c
		ids = append(ids, c.TenantID)
	}
	if names == nil {
		for id := range deployed {
			if localByID[id] == nil {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	drift := false
	for _, id := range ids {
		r, isDeployed := deployed[id]
		c := localByID[id]
		switch {
		case c == nil:
			drift = true
			fmt.Fprintf(stdout, "%s: deployed (revision %d, digest %s) but not in %s\n", id, r.Revision, r.ShortDigest(), f.dir)
			continue
		case !isDeployed:
			drift = true
			fmt.Fprintf(stdout, "%s: not deployed\n", id)
			continue
		}
		value, err := store.CanonicalTenantConfig(c)
		if err != nil {
			return drift, err
		}
		if store.Digest(value) == r.Digest {
			fmt.Fprintf(stdout, "%s: no drift (revision %d, digest %s)\n", id, r.Revision, r.ShortDigest())
			continue
		}
		lines, err := fieldDiff(r.Value, value)
		if err != nil {
			return drift, fmt.Errorf("%s: %w", id, err)
		}
		drift = true
		fmt.Fprintf(stdout, "%s: drift (deployed revision %d, digest %s → local %s)\n", id, r.Revision, r.ShortDigest(), store.ShortDigest(store.Digest(value)))
		for _, l := range lines {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
	}
	return drift, nil
}

// fieldDiff lists the fields that differ between two canonical configs, as "path: old → new".
// API keys are digests; they are shown as their key IDs (12 hex digits) added or removed.
func fieldDiff(deployed, local []byte) ([]string, error) {
	var a, b any
	if err := json.Unmarshal(deployed, &a); err != nil {
		return nil, fmt.Errorf("deployed value: %w", err)
	}
	if err := json.Unmarshal(local, &b); err != nil {
		return nil, fmt.Errorf("local value: %w", err)
	}
	var out []string
	diffValue("", a, b, &out)
	return out, nil
}

func diffValue(path string, a, b any, out *[]string) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := make([]string, 0, len(am)+len(bm))
		for k := range am {
			keys = append(keys, k)
		}
		for k := range bm {
			if _, ok := am[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			av, inA := am[k]
			bv, inB := bm[k]
			switch {
			case !inA:
				*out = append(*out, fmt.Sprintf("%s: (absent) → %s", p, showValue(p, bv)))
			case !inB:
				*out = append(*out, fmt.Sprintf("%s: %s → (absent)", p, showValue(p, av)))
			default:
				diffValue(p, av, bv, out)
			}
		}
		return
	}
	if reflect.DeepEqual(a, b) {
		return
	}
	if path == "apiKeys" {
		as, bs := stringSet(a), stringSet(b)
		for _, k := range bs {
			if !slices.Contains(as, k) {
				*out = append(*out, "apiKeys: + "+keyIDOf(k))
			}
		}
		for _, k := range as {
			if !slices.Contains(bs, k) {
				*out = append(*out, "apiKeys: - "+keyIDOf(k))
			}
		}
		return
	}
	*out = append(*out, fmt.Sprintf("%s: %s → %s", path, showValue(path, a), showValue(path, b)))
}

// showValue renders a JSON value compactly; API keys only as key IDs.
func showValue(path string, v any) string {
	if path == "apiKeys" {
		ids := []string{}
		for _, k := range stringSet(v) {
			ids = append(ids, keyIDOf(k))
		}
		return "[" + strings.Join(ids, ", ") + "]"
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(buf.String())
}

func stringSet(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// keyIDOf shows a "sha256:<hex>" digest as "sha256:" and its first 12 hex digits, the key ID the
// server logs.
func keyIDOf(digest string) string {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) < 12 {
		return "(not a digest)"
	}
	return "sha256:" + h[:12] + "…"
}

func newRollbackCmd() *cobra.Command {
	var (
		f  deployFlags
		to uint64
	)
	cmd := &cobra.Command{
		Use:   "rollback TENANT [--to REVISION]",
		Short: "Restore an earlier revision of a tenant's deployed config (default: the one before the current)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !config.ValidTenantID(args[0]) {
				return errors.New("tenant IDs match [a-z0-9-]{1,63}")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			return runRollback(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), f, args[0], to)
		},
	}
	f.bind(cmd, true)
	cmd.Flags().Uint64Var(&to, "to", 0, "the revision to restore (see `crispy tenants history`); 0 = the previous one")
	return cmd
}

func runRollback(ctx context.Context, stdout, stderr io.Writer, f deployFlags, id string, to uint64) error {
	ts, js, closeNATS, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer closeNATS()
	hist, err := ts.History(ctx, id)
	if err != nil {
		return err
	}
	cur := hist[len(hist)-1]
	var target *store.TenantRevision
	for i := len(hist) - 2; i >= 0; i-- {
		r := hist[i]
		if (to == 0 && !r.Deleted) || r.Revision == to {
			target = &hist[i]
			break
		}
	}
	switch {
	case to == cur.Revision:
		return fmt.Errorf("%s: revision %d is already the current one", id, to)
	case target == nil && to == 0:
		return fmt.Errorf("%s: no earlier revision to roll back to", id)
	case target == nil:
		return fmt.Errorf("%s: revision %d is not kept (see `crispy tenants history %s`)", id, to, id)
	case target.Deleted:
		return fmt.Errorf("%s: revision %d is a delete marker", id, to)
	}
	cfg, err := target.Config()
	if err != nil {
		return fmt.Errorf("refusing to roll back, nothing was written: revision %d no longer validates:\n%w", target.Revision, err)
	}
	st, err := readDeployed(ctx, ts)
	if err != nil {
		return err
	}
	if err := st.checkIndex(cfg); err != nil {
		return fmt.Errorf("refusing to roll back, nothing was written: the tenant index would not load:\n%w", err)
	}
	rev, err := ts.Rollback(ctx, id, target.Revision, cur.Revision, writeMeta())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: rolled back to revision %d as revision %d, digest %s\n", id, target.Revision, rev.Revision, rev.ShortDigest())
	ledger, lerr := store.BindLedger(ctx, js)
	if lerr != nil {
		fmt.Fprintf(stderr, "warning: audit event not recorded: %v\n", lerr)
	}
	audit(ctx, ledger, stderr, rev, cur.Revision)
	return nil
}

func newHistoryCmd() *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "history TENANT",
		Short: "List the kept revisions of a tenant's deployed config: revision, time, digest, action, who and where",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !config.ValidTenantID(args[0]) {
				return errors.New("tenant IDs match [a-z0-9-]{1,63}")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			ts, _, closeNATS, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer closeNATS()
			hist, err := ts.History(ctx, args[0])
			if err != nil {
				return err
			}
			printHistory(cmd.OutOrStdout(), hist)
			return nil
		},
	}
	f.bind(cmd, true)
	_ = cmd.Flags().MarkHidden("dir")
	return cmd
}

func printHistory(w io.Writer, hist []store.TenantRevision) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tTIME\tDIGEST\tACTION\tBY\tFROM\t")
	for i, r := range hist {
		action, digest := r.Action, r.ShortDigest()
		if r.RollbackTo > 0 {
			action = fmt.Sprintf("%s to %d", action, r.RollbackTo)
		}
		if r.Deleted {
			digest = "-"
		}
		current := ""
		if i == len(hist)-1 {
			current = "(current)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Revision, r.Time.Format(time.RFC3339), digest,
			orDash(action), orDash(r.By), orDash(r.From), current)
	}
	_ = tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newScaffoldCmd() *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   "new TENANT",
		Short: "Scaffold <dir>/TENANT/tenant.config.json with a fresh API key (printed once); never overwrites",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScaffold(cmd.OutOrStdout(), f.dir, args[0])
		},
	}
	f.bind(cmd, false)
	return cmd
}

func runScaffold(stdout io.Writer, dir, id string) error {
	if !config.ValidTenantID(id) {
		return errors.New("tenant IDs match [a-z0-9-]{1,63}")
	}
	key, digest, err := config.NewAPIKey()
	if err != nil {
		return err
	}
	tmpl := map[string]any{
		"tenantId":           id,
		"accountId":          "set-me",
		"aiGatewayId":        "default",
		"aiModels":           map[string]any{"chat": "local/extractive", "embeddings": "local/hash-embed"},
		"vectorizeNamespace": id,
		"rateLimit":          map[string]any{"perMinute": 60, "burst": 10},
		"featureFlags":       map[string]bool{},
		"allowedHosts":       []string{},
		"apiKeys":            []string{digest},
	}
	data, err := json.Marshal(tmpl)
	if err != nil {
		return err
	}
	file := filepath.Join(dir, id, config.TenantFileName)
	cfg, _, err := config.ParseTenantConfig(file, data)
	if err != nil {
		return fmt.Errorf("scaffold does not validate (a bug): %w", err)
	}
	out, err := store.CanonicalTenantConfig(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	// O_EXCL: refuse to overwrite, atomically.
	fh, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: not overwriting it", file)
	}
	if err != nil {
		return err
	}
	if _, err := fh.Write(out); err != nil {
		_ = fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\nAPI key for %s (shown once, store it now):\n  %s\n", file, id, key)
	fmt.Fprintf(stdout, "Edit accountId, models, hosts and limits, then: crispy tenants deploy %s\n", id)
	return nil
}

// watchDeployedTenants makes the tenants bucket the node's source of tenant configs and keeps it
// applied: it opens the bucket, seeds it from ix (what --tenants-dir or the built-in defaults
// gave), and returns the index to serve with now. A cluster seeds only an empty bucket; a single
// node re-seeds as long as no deploy was ever made, so that it follows its --tenants-dir exactly as
// before until the first `crispy tenants deploy`. start begins the watch that calls apply with
// every new index until ctx ends (call it once the server exists); stop ends it.
func watchDeployedTenants(ctx context.Context, log zerolog.Logger, ts *store.TenantStore, clustered bool, node string, ix *config.Index) (
	_ *config.Index, start func(ctx context.Context, apply func(*config.Index)) (stop func(), err error), err error) {
	n, err := ts.Seed(ctx, ix.All(), store.SeedOptions{Replace: !clustered, Meta: store.WriteMeta{By: "crispy serve", From: node}})
	if err != nil {
		return nil, nil, fmt.Errorf("seed tenants bucket: %w", err)
	}
	deployed, err := ts.Index(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("deployed tenants: %w", err)
	}
	if deployed == nil {
		deployed = ix
	}
	for _, w := range deployed.Warnings() {
		log.Warn().Msg(w)
	}
	log.Info().Int("seeded", n).Int("tenants", deployed.Len()).Msg("tenants: serving the deployed configs of the tenants bucket")
	start = func(ctx context.Context, apply func(*config.Index)) (func(), error) {
		w, err := ts.WatchIndex(ctx, func(ix *config.Index, revs []store.TenantRevision) {
			apply(ix)
			ev := log.Info().Int("tenants", ix.Len())
			if ev.Enabled() {
				rs := make([]string, len(revs))
				for i, r := range revs {
					rs[i] = fmt.Sprintf("%s@%d", r.TenantID, r.Revision)
				}
				ev = ev.Strs("revisions", rs)
			}
			ev.Msg("tenants: index swapped")
		}, func(err error) { log.Error().Err(err).Msg("tenants: deployed configs not applied") })
		if err != nil {
			return nil, err
		}
		return w.Stop, nil
	}
	return deployed, start, nil
}
