package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go, no cgo)
)

// ErrClosed is returned by TenantDBs methods called after Close.
var ErrClosed = errors.New("store: tenant databases closed")

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered schema step, from migrations/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the embedded migrations in version order. A malformed file name is a
// programming error caught by the package's tests, so it is reported, not skipped.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %q: want NNNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(migrationFiles, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("two migrations numbered %d", ms[i].version)
		}
	}
	return ms, nil
}

// DBOption tunes TenantDBs.
type DBOption func(*dbOptions)

type dbOptions struct {
	busyTimeout  time.Duration
	maxOpenConns int
}

// WithBusyTimeout sets how long a connection waits for another writer's lock (default 5s).
func WithBusyTimeout(d time.Duration) DBOption { return func(o *dbOptions) { o.busyTimeout = d } }

// WithMaxOpenConns bounds each tenant's connection pool (default 4). SQLite has one writer at a
// time anyway; the bound keeps file descriptors in check with many tenants.
func WithMaxOpenConns(n int) DBOption { return func(o *dbOptions) { o.maxOpenConns = n } }

// TenantDBs opens and caches one SQLite database per tenant at <dataDir>/tenants/<tenant>/meta.db,
// migrated to the current schema. It is safe for concurrent use.
type TenantDBs struct {
	dataDir string
	opts    dbOptions

	mu     sync.Mutex
	dbs    map[string]*dbEntry // by tenant ID, plus healthKey
	closed bool
}

// dbEntry is one tenant's handle; ready is closed once db/err are set, so concurrent first users
// wait for one open instead of racing to open (and migrate) the same file twice.
type dbEntry struct {
	ready chan struct{}
	db    *sql.DB
	err   error
}

// OpenTenantDBs returns a TenantDBs rooted at dataDir. It touches nothing on disk until a database
// is first used.
func OpenTenantDBs(dataDir string, opts ...DBOption) *TenantDBs {
	o := dbOptions{busyTimeout: 5 * time.Second, maxOpenConns: 4}
	for _, opt := range opts {
		opt(&o)
	}
	return &TenantDBs{dataDir: dataDir, opts: o, dbs: map[string]*dbEntry{}}
}

// healthKey is the cache key of the Ping database; it cannot collide with a tenant ID (a space).
const healthKey = " health"

// DB returns the tenant's database, opening, creating and migrating it on first use.
func (t *TenantDBs) DB(ctx context.Context, tenantID string) (*sql.DB, error) {
	if err := ValidateTenantID(tenantID); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return t.get(ctx, tenantID, filepath.Join(t.dataDir, "tenants", tenantID, "meta.db"), migrate)
}

// get returns the cached handle for key or opens path and runs setup on it.
func (t *TenantDBs) get(ctx context.Context, key, path string, setup func(context.Context, *sql.DB) error) (*sql.DB, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	e := t.dbs[key]
	if e == nil {
		e = &dbEntry{ready: make(chan struct{})}
		t.dbs[key] = e
		t.mu.Unlock()
		// Opening ignores ctx cancellation on purpose: other callers may be waiting on this entry.
		e.db, e.err = t.open(context.WithoutCancel(ctx), path, setup)
		close(e.ready)
		if e.err != nil {
			// Forget the failure so a later call retries (the disk may have been full).
			t.mu.Lock()
			if t.dbs[key] == e {
				delete(t.dbs, key)
			}
			t.mu.Unlock()
		}
	} else {
		t.mu.Unlock()
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	return e.db, nil
}

func (t *TenantDBs) open(ctx context.Context, path string, setup func(context.Context, *sql.DB) error) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite path %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("store: sqlite dir: %w", err)
	}
	// A file: URI so that any character in the data dir is escaped; the driver applies the
	// _pragma list to every new connection of the pool, not just the first.
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", t.opts.busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// Write transactions take the write lock at BEGIN, so two writers queue on busy_timeout instead
	// of one failing with SQLITE_BUSY when it upgrades a read lock.
	q.Set("_txlock", "immediate")
	dsn := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}).String()

	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %q: %w", path, err)
	}
	db.SetMaxOpenConns(t.opts.maxOpenConns)
	db.SetMaxIdleConns(min(2, t.opts.maxOpenConns))
	if err := setup(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: set up %q: %w", path, err)
	}
	return db, nil
}

// migrate applies, in order and each in its own transaction, the migrations not yet recorded in
// schema_migrations.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		if err := applyMigration(ctx, db, m); err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, time.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}

// Tenants lists the tenants that have a database directory under the data dir (for example to
// rebuild every read model). Entries that are not valid tenant IDs are ignored.
func (t *TenantDBs) Tenants() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(t.dataDir, "tenants"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: list tenants: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && ValidateTenantID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Ping checks that the data dir can hold a database: it opens (once) <dataDir>/health.db and
// writes a row. For /readyz.
func (t *TenantDBs) Ping(ctx context.Context) error {
	db, err := t.get(ctx, healthKey, filepath.Join(t.dataDir, "health.db"), func(ctx context.Context, db *sql.DB) error {
		_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ping (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT OR REPLACE INTO ping (id, at) VALUES (1, ?)`, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("store: ping write: %w", err)
	}
	return nil
}

// Close closes every open database. Calls after Close fail with ErrClosed.
func (t *TenantDBs) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	entries := make([]*dbEntry, 0, len(t.dbs))
	for _, e := range t.dbs {
		entries = append(entries, e)
	}
	t.dbs = nil
	t.mu.Unlock()

	var errs []error
	for _, e := range entries {
		<-e.ready
		if e.db != nil {
			errs = append(errs, e.db.Close())
		}
	}
	return errors.Join(errs...)
}
