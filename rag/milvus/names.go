package milvus

import (
	"fmt"
	"strings"

	"github.com/crispy-enigma/crispy/rag"
)

// Milvus names (collections, partitions) are letters, digits and '_', must
// not start with a digit, and are at most 255 characters: both functions
// below stay well under that (≤ 130 characters).

// CollectionName derives the collection for an embedding model and
// dimension: "crispy_" + the model ID with every run of other characters
// folded to '_' (readable, but lossy: "a-b" and "a_b" fold alike), the
// dimension, and 12 hex digits of the model ID's SHA-256, which keeps two
// models that fold alike apart. Open also stores the exact model ID as the
// collection's description and refuses a collection made for another model.
//
//	CollectionName("local/hash-embed", 384) == "crispy_local_hash_embed_384_<hash>"
func CollectionName(model string, dim int) string {
	return "crispy_" + rag.IndexName(model, dim)
}

// PartitionName maps a tenant's vectorizeNamespace ([A-Za-z0-9_-]{1,64},
// config.parse) onto Milvus's partition alphabet injectively: "t_" then the
// namespace with letters and digits kept, '_' written "__" and '-' written
// "_h". The codes form a prefix-free set, so two namespaces never share a
// partition ("a_-b" → "t_a___hb", "a-_b" → "t_a_h__b"); the plain "'-' → '_'"
// folding would merge "a-b" with "a_b".
//
//	PartitionName("acme-docs") == "t_acme_hdocs"
func PartitionName(namespace string) (string, error) {
	if namespace == "" || len(namespace) > 64 {
		return "", fmt.Errorf("vectorizeNamespace %q: must be 1-64 characters", namespace)
	}
	var b strings.Builder
	b.Grow(2 + 2*len(namespace))
	b.WriteString("t_")
	for i := 0; i < len(namespace); i++ {
		switch c := namespace[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '_':
			b.WriteString("__")
		case c == '-':
			b.WriteString("_h")
		default:
			return "", fmt.Errorf("vectorizeNamespace %q: only letters, digits, '-' and '_' are allowed", namespace)
		}
	}
	return b.String(), nil
}
