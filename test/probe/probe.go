// Package probe is a small test kit for actors (the protoactor test kit is not in the module version
// we use): a probe actor that records every message it receives, so a test can send a message to an
// actor with the probe as sender and expect a reply of a given type within a timeout.
package probe

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// DefaultTimeout is how long Expect waits when the probe was created with a zero timeout.
const DefaultTimeout = 5 * time.Second

// Probe is a spawned probe actor.
type Probe struct {
	system  *actor.ActorSystem
	pid     *actor.PID
	inbox   chan any
	timeout time.Duration
}

type probeActor struct{ inbox chan any }

// watch asks the probe actor to watch an actor; its Terminated then arrives in the inbox.
type watch struct{ pid *actor.PID }

func (p *probeActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *watch:
		ctx.Watch(msg.pid)
		return
	case *actor.Terminated:
		p.inbox <- msg
		return
	case actor.SystemMessage, actor.AutoReceiveMessage:
		return
	}
	p.inbox <- ctx.Message()
}

// New spawns a probe in system; it is stopped when the test ends. timeout 0 means DefaultTimeout.
func New(t testing.TB, system *actor.ActorSystem, timeout time.Duration) *Probe {
	t.Helper()
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	inbox := make(chan any, 1024)
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &probeActor{inbox: inbox} }))
	t.Cleanup(func() { _ = system.Root.StopFuture(pid).Wait() })
	return &Probe{system: system, pid: pid, inbox: inbox, timeout: timeout}
}

// PID is the probe's PID.
func (p *Probe) PID() *actor.PID { return p.pid }

// Send sends msg to target with the probe as sender, so target's ctx.Respond reaches the probe.
func (p *Probe) Send(target *actor.PID, msg any) {
	p.system.Root.RequestWithCustomSender(target, msg, p.pid)
}

// Watch makes the probe watch target: when target stops, the probe receives *actor.Terminated.
func (p *Probe) Watch(target *actor.PID) {
	p.system.Root.Send(p.pid, &watch{pid: target})
}

// Receive returns the next message the probe got, or an error after the probe's timeout.
func (p *Probe) Receive() (any, error) {
	select {
	case m := <-p.inbox:
		return m, nil
	case <-time.After(p.timeout):
		return nil, fmt.Errorf("probe: no message within %v", p.timeout)
	}
}

// Expect waits for the next message and fails the test unless it is a T.
func Expect[T any](t testing.TB, p *Probe) T {
	t.Helper()
	m, err := p.Receive()
	if err != nil {
		var zero T
		t.Fatalf("expecting %v: %v", reflect.TypeFor[T](), err)
		return zero
	}
	typed, ok := m.(T)
	if !ok {
		t.Fatalf("expecting %v, got %T: %v", reflect.TypeFor[T](), m, m)
	}
	return typed
}

// Ask sends msg to target with the probe as sender and expects a reply of type T.
func Ask[T any](t testing.TB, p *Probe, target *actor.PID, msg any) T {
	t.Helper()
	p.Send(target, msg)
	return Expect[T](t, p)
}

// ExpectNone fails the test if the probe has a message waiting now (it does not wait: tests must
// not depend on timing).
func (p *Probe) ExpectNone(t testing.TB) {
	t.Helper()
	select {
	case m := <-p.inbox:
		t.Fatalf("expecting no message, got %T: %v", m, m)
	default:
	}
}
