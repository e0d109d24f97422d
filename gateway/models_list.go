package gateway

import (
	"maps"
	"slices"
)

// ChatModelIDs lists the chat models the router can name: the built-in local models and the routing
// table's exact model IDs, sorted. Models served only through a prefix entry ("qwen*", "*") or by
// Workers AI (@cf/) exist without being enumerable; Describe answers for them.
func (r *Router) ChatModelIDs() []string {
	ids := slices.Collect(maps.Keys(r.local))
	for id := range r.exact {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// EmbeddingModelIDs lists the embedding models the router can name: the built-in hash embedder and
// the routing table's exact embedding IDs, sorted. Prefix entries and @cf/ models are not
// enumerable; EmbedderFor answers for them.
func (r *Router) EmbeddingModelIDs() []string {
	ids := append([]string{HashEmbedID}, slices.Collect(maps.Keys(r.embedExact))...)
	slices.Sort(ids)
	return slices.Compact(ids)
}
