package store

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// processCPU is the CPU time (user + system) the whole process has used so far.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProjectorPipeline measures the projector end to end as a node runs it: b.N model_call
// events of 8 tenants, interleaved, are on LEDGER before the projector starts; the timed part is
// the durable consumer delivering them, the SQLite writes and the acks, until every tenant's read
// model holds its events. cpu-µs/event is the process's CPU time (embedded NATS server included)
// per event, which is what the projector costs a node; wall time on a shared machine is noisier.
func BenchmarkProjectorPipeline(b *testing.B) {
	const tenants = 8
	js, _ := startNATS(b, b.TempDir())
	if _, err := OpenLedger(b.Context(), js, LedgerOptions{}); err != nil {
		b.Fatal(err)
	}
	dbs := OpenTenantDBs(b.TempDir())
	defer dbs.Close()
	want := map[string]int{}
	var futures []jetstream.PubAckFuture
	for i := range b.N {
		tenant := fmt.Sprintf("t%d", i%tenants)
		ev := Event{ID: fmt.Sprint("e", i), Kind: KindModelCall, TenantID: tenant, Time: day1, Model: "m", TokensIn: 10, TokensOut: 20}
		data, err := json.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		f, err := js.PublishAsync("ledger."+tenant+"."+KindModelCall, data)
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
		want[tenant]++
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	for tenant := range want { // open (and migrate) the databases outside the timed part
		if _, err := dbs.DB(b.Context(), tenant); err != nil {
			b.Fatal(err)
		}
	}
	p := NewProjector(js, dbs, ProjectorOptions{Durable: "bench", OnError: func(err error) { b.Error(err) }})

	b.ResetTimer()
	cpu := processCPU(b)
	if err := p.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	for tenant, n := range want {
		db, err := dbs.DB(b.Context(), tenant)
		if err != nil {
			b.Fatal(err)
		}
		for {
			var got int
			if err := db.QueryRowContext(b.Context(), `SELECT count(*) FROM ledger_events`).Scan(&got); err != nil {
				b.Fatal(err)
			}
			if got == n {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/event")
	p.Stop()
}
