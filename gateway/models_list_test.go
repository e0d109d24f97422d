package gateway

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRouterModelIDs(t *testing.T) {
	r := NewRouter(RouterOptions{Providers: []ProviderConfig{
		{Name: "a", BaseURL: "http://127.0.0.1:1", Models: []string{"llama", "qwen*"}, Embeddings: []string{"bge", "e5*"}},
		{Name: "b", BaseURL: "http://127.0.0.1:2", Models: []string{"llama", "mistral"}},
	}})
	if diff := cmp.Diff([]string{"llama", ExtractiveModelID, "mistral"}, r.ChatModelIDs()); diff != "" {
		t.Errorf("chat (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"bge", HashEmbedID}, r.EmbeddingModelIDs()); diff != "" {
		t.Errorf("embeddings (-want +got):\n%s", diff)
	}
}
