package milvus

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// milvusName is Milvus's rule for collection and partition names.
var milvusName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,254}$`)

func TestPartitionName(t *testing.T) {
	tests := []struct {
		ns, want string
	}{
		{"example", "t_example"},
		{"acme-docs", "t_acme_hdocs"},
		{"my_ns", "t_my__ns"},
		{"9lives", "t_9lives"}, // the prefix keeps a leading digit legal
		{"Mixed-Case_1", "t_Mixed_hCase__1"},
	}
	for _, tt := range tests {
		got, err := PartitionName(tt.ns)
		if err != nil || got != tt.want {
			t.Errorf("PartitionName(%q) = %q, %v; want %q", tt.ns, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "a b", "a.b", "ü", strings.Repeat("a", 65)} {
		if got, err := PartitionName(bad); err == nil {
			t.Errorf("PartitionName(%q) = %q, want an error", bad, got)
		}
	}
}

// Pairs that a "'-' → '_'" folding would merge stay apart.
func TestPartitionNameIsInjective(t *testing.T) {
	pairs := [][2]string{{"a-b", "a_b"}, {"a_-b", "a-_b"}, {"a__b", "a-hb"}, {"a_h", "a-"}, {"x-", "x_"}}
	for _, p := range pairs {
		a, _ := PartitionName(p[0])
		b, _ := PartitionName(p[1])
		if a == b {
			t.Errorf("%q and %q share partition %q", p[0], p[1], a)
		}
	}
}

func FuzzPartitionName(f *testing.F) {
	for _, s := range []string{"a-b", "a_b", "A", "-_-", "0"} {
		f.Add(s, s+"-")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		pa, errA := PartitionName(a)
		pb, errB := PartitionName(b)
		if errA == nil && !milvusName.MatchString(pa) {
			t.Fatalf("PartitionName(%q) = %q is not a Milvus name", a, pa)
		}
		if errA == nil && errB == nil && a != b && pa == pb {
			t.Fatalf("%q and %q share partition %q", a, b, pa)
		}
	})
}

func TestCollectionName(t *testing.T) {
	tests := []struct {
		model  string
		dim    int
		prefix string
	}{
		{"local/hash-embed", 384, "crispy_local_hash_embed_384_"},
		{"@cf/baai/bge-small-en-v1.5", 384, "crispy_cf_baai_bge_small_en_v1_5_384_"},
		{"text-embedding-3-small", 1536, "crispy_text_embedding_3_small_1536_"},
		{"???", 8, "crispy_8_"},
		{strings.Repeat("long-", 100), 8, "crispy_long_long_"},
	}
	for _, tt := range tests {
		got := CollectionName(tt.model, tt.dim)
		if !strings.HasPrefix(got, tt.prefix) || !milvusName.MatchString(got) {
			t.Errorf("CollectionName(%q, %d) = %q, want a Milvus name starting %q", tt.model, tt.dim, got, tt.prefix)
		}
	}
	// Models that fold to the same text, and one model at two dimensions,
	// get different collections.
	distinct := []string{
		CollectionName("a-b", 8), CollectionName("a_b", 8), CollectionName("A/B", 8), CollectionName("a-b", 16),
	}
	seen := map[string]bool{}
	for _, n := range distinct {
		if seen[n] {
			t.Errorf("collection name %q derived twice", n)
		}
		seen[n] = true
	}
}

func TestFilterExpr(t *testing.T) {
	tests := []struct {
		name   string
		filter map[string]any
		want   string
	}{
		{"tenant guard only", nil, `tenant == "tenant-a"`},
		{"docId is the doc_id field", map[string]any{"docId": "d1"}, `tenant == "tenant-a" && doc_id == "d1"`},
		{"non-string docId matches nothing", map[string]any{"docId": 7}, `tenant == "tenant-a" && false`},
		{"keys sorted, types rendered", map[string]any{"year": 2023.0, "public": false, "source": "wiki"},
			`tenant == "tenant-a" && meta["public"] == false && meta["source"] == "wiki" && meta["year"] == 2023`},
		{"fractional number", map[string]any{"score": 0.5}, `tenant == "tenant-a" && meta["score"] == 0.5`},
		{"quotes escaped", map[string]any{"title": `" || tenant != "`}, `tenant == "tenant-a" && meta["title"] == "\" || tenant != \""`},
		{"unicode kept", map[string]any{"source": "Ünïcødé"}, `tenant == "tenant-a" && meta["source"] == "Ünïcødé"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := filterExpr("tenant-a", tt.filter)
			if err != nil || got != tt.want {
				t.Errorf("filterExpr = %s, %v\nwant %s", got, err, tt.want)
			}
		})
	}
	for _, bad := range []map[string]any{
		{"k": []int{1}}, {"k": nil}, {`k"`: 1}, {`k\`: 1}, {"": 1}, {"k\n": 1},
	} {
		if got, err := filterExpr("tenant-a", bad); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("filterExpr(%v) = %s, %v; want ErrInvalidFilter", bad, got, err)
		}
	}
}
