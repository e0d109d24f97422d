package config

import "sync/atomic"

// Live is the tenant index in force on a node, swapped whole when the deployed configs change:
// services that outlive a request (the ingest worker, the tools) read it, while a request keeps
// the config it started with.
type Live struct{ p atomic.Pointer[Index] }

// NewLive returns a Live serving ix.
func NewLive(ix *Index) *Live {
	l := &Live{}
	l.p.Store(ix)
	return l
}

// Load returns the index in force.
func (l *Live) Load() *Index { return l.p.Load() }

// Store swaps in ix; readers see the old or the new index, never a mix.
func (l *Live) Store(ix *Index) { l.p.Store(ix) }

// ByID looks a tenant up in the index in force.
func (l *Live) ByID(id string) (*TenantConfig, bool) { return l.p.Load().ByID(id) }
