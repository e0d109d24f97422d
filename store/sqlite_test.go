package store

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func openDBs(t *testing.T, dir string) *TenantDBs {
	t.Helper()
	dbs := OpenTenantDBs(dir)
	t.Cleanup(func() {
		if err := dbs.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return dbs
}

func columns(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return cols
}

func TestTenantDBsOpensMigratedDatabase(t *testing.T) {
	dir := t.TempDir()
	dbs := openDBs(t, dir)
	db, err := dbs.DB(t.Context(), "acme")
	if err != nil {
		t.Fatalf("DB: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tenants", "acme", "meta.db")); err != nil {
		t.Fatalf("meta.db not at <dataDir>/tenants/<tenant>/meta.db: %v", err)
	}

	// Pragmas hold on every connection of the pool, so check on a few at once.
	conns := make([]*sql.Conn, 3)
	for i := range conns {
		c, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		for pragma, want := range map[string]string{
			"journal_mode": "wal",
			"foreign_keys": "1",
			"synchronous":  "1", // NORMAL
			"busy_timeout": "5000",
		} {
			var got string
			if err := c.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("conn %d: PRAGMA %s = %q, want %q", i, pragma, got, want)
			}
		}
	}

	// The read model's columns, spelled out: a raw prompt or answer has no column to land in.
	want := map[string][]string{
		"usage": {"event_id", "ts", "trace_id", "session_id", "user_id", "model", "provider", "tokens_in",
			"tokens_out", "estimated", "latency_ms", "cost", "outcome", "cached"},
		"audit": {"event_id", "ts", "kind", "trace_id", "user_id", "subject", "detail", "success",
			"error_code", "duration_ms"},
		"sessions":  {"session_id", "created_at", "last_active_at", "messages", "cleared_at"},
		"documents": {"doc_id", "title", "source", "url", "content_type", "chunks", "bytes", "sha256", "ingested_at"},
	}
	for table, cols := range want {
		if diff := cmp.Diff(cols, columns(t, db, table)); diff != "" {
			t.Errorf("table %s columns (-want +got):\n%s", table, diff)
		}
	}
	for _, idx := range []string{"usage_ts", "audit_ts"} {
		var n int
		if err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM sqlite_schema WHERE type='index' AND name=?`, idx).Scan(&n); err != nil || n != 1 {
			t.Errorf("index %s: count %d, err %v", idx, n, err)
		}
	}
}

func TestTenantDBsMigratesOnce(t *testing.T) {
	dir := t.TempDir()
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("loadMigrations = %d migrations, %v", len(ms), err)
	}
	for round := range 2 {
		dbs := OpenTenantDBs(dir)
		db, err := dbs.DB(t.Context(), "acme")
		if err != nil {
			t.Fatalf("round %d: DB: %v", round, err)
		}
		var n, maxV int
		if err := db.QueryRowContext(t.Context(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &maxV); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) || maxV != ms[len(ms)-1].version {
			t.Errorf("round %d: schema_migrations has %d rows (max %d), want %d (max %d)", round, n, maxV, len(ms), ms[len(ms)-1].version)
		}
		if err := dbs.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTenantDBsOneHandlePerTenantUnderConcurrentFirstUse(t *testing.T) {
	dbs := openDBs(t, t.TempDir())
	const n = 16
	got := make([]*sql.DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tenant := "acme"
			if i%2 == 1 {
				tenant = "globex"
			}
			got[i], errs[i] = dbs.DB(t.Context(), tenant)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if got[i] != got[i%2] {
			t.Errorf("goroutine %d got a different handle than goroutine %d for the same tenant", i, i%2)
		}
	}
	if got[0] == got[1] {
		t.Error("two tenants share one handle")
	}
}

func TestTenantDBsRejectsBadTenantIDs(t *testing.T) {
	dir := t.TempDir()
	dbs := openDBs(t, filepath.Join(dir, "data"))
	for _, id := range []string{"", "..", "../escape", "a/b", `a\b`, "/abs", "A", "a.b", "a b", "x\x00"} {
		if _, err := dbs.DB(t.Context(), id); !errors.Is(err, ErrInvalidTenant) {
			t.Errorf("DB(%q) err = %v, want ErrInvalidTenant", id, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("bad tenant IDs created files: %v", entries)
	}
}

func TestTenantDBsPingAndClose(t *testing.T) {
	dir := t.TempDir()
	dbs := OpenTenantDBs(dir)
	if err := dbs.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := dbs.Ping(t.Context()); err != nil {
		t.Fatalf("second Ping: %v", err)
	}
	if _, err := dbs.DB(t.Context(), "acme"); err != nil {
		t.Fatal(err)
	}
	ids, err := dbs.Tenants()
	if err != nil || !cmp.Equal(ids, []string{"acme"}) {
		t.Errorf("Tenants = %v, %v; want [acme]", ids, err)
	}
	if err := dbs.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := dbs.DB(t.Context(), "acme"); !errors.Is(err, ErrClosed) {
		t.Errorf("DB after Close: err = %v, want ErrClosed", err)
	}
	if err := dbs.Ping(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close: err = %v, want ErrClosed", err)
	}

	// A data dir that cannot hold a database (it is a file) fails Ping, and a later Ping retries.
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := openDBs(t, file)
	if err := bad.Ping(t.Context()); err == nil {
		t.Error("Ping on a data dir that is a file: want an error")
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := bad.Ping(t.Context()); err != nil {
		t.Errorf("Ping after the data dir became usable: %v (a failed open must not be cached)", err)
	}
}
