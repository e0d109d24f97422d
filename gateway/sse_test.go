package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type sseEv struct{ Type, ID, Data string }

func readAllEvents(t testing.TB, in string) ([]sseEv, error) {
	t.Helper()
	r := NewSSEReader(strings.NewReader(in))
	var out []sseEv
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, sseEv{ev.Type, ev.ID, string(ev.Data)})
	}
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []sseEv
		why  string
	}{
		{"one event", "data: hello\n\n", []sseEv{{Data: "hello"}}, ""},
		{"two events", "data: a\n\ndata: b\n\n", []sseEv{{Data: "a"}, {Data: "b"}}, ""},
		{"multi-line data", "data: a\ndata: b\n\n", []sseEv{{Data: "a\nb"}}, "data lines join with \\n"},
		{"no space after colon", "data:x\n\n", []sseEv{{Data: "x"}}, ""},
		{"only one space removed", "data:  x\n\n", []sseEv{{Data: " x"}}, ""},
		{"comments ignored", ": keep-alive\ndata: a\n: more\n\n", []sseEv{{Data: "a"}}, "OpenRouter-style keep-alive comments"},
		{"named event", "event: error\ndata: {}\n\n", []sseEv{{Type: "error", Data: "{}"}}, ""},
		{"event without data not dispatched", "event: ping\n\ndata: a\n\n", []sseEv{{Data: "a"}}, "and its type does not leak into the next event"},
		{"blank lines alone", "\n\n\n", nil, ""},
		{"CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", []sseEv{{Data: "a"}, {Data: "b"}}, ""},
		{"lone CR", "data: a\r\rdata: b\r\r", []sseEv{{Data: "a"}, {Data: "b"}}, "the standard allows CR alone"},
		{"field without colon", "data\n\n", []sseEv{{Data: ""}}, "a data line with an empty value still dispatches"},
		{"empty data twice", "data\ndata\n\n", []sseEv{{Data: "\n"}}, ""},
		{"id", "id: 7\ndata: a\n\ndata: b\n\n", []sseEv{{ID: "7", Data: "a"}, {ID: "7", Data: "b"}}, "the last event ID persists"},
		{"unknown fields ignored", "retry: 10\nfoo: bar\ndata: a\n\n", []sseEv{{Data: "a"}}, ""},
		{"DONE without blank line", "data: a\n\ndata: [DONE]\n", []sseEv{{Data: "a"}, {Data: "[DONE]"}}, "lenient: complete lines at EOF dispatch"},
		{"truncated last line dropped", "data: a\n\ndata: {\"cho", []sseEv{{Data: "a"}}, "an unterminated line may be a cut chunk"},
		{"empty", "", nil, ""},
		{"JSON chunk", "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
			[]sseEv{{Data: `{"choices":[{"delta":{"content":"Hi"}}]}`}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAllEvents(t, tt.in)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got) %s:\n%s", tt.why, diff)
			}
		})
	}
}

func TestSSEReaderSplitReads(t *testing.T) {
	// A CRLF split across two reads must still count as one line end.
	in := "data: a\r\n\r\ndata: b\r\n\r\n"
	for split := 1; split < len(in); split++ {
		r := NewSSEReader(io.MultiReader(strings.NewReader(in[:split]), strings.NewReader(in[split:])))
		var got []string
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			got = append(got, string(ev.Data))
		}
		if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
			t.Errorf("split at %d (-want +got):\n%s", split, diff)
		}
	}
}

func TestSSEReaderLineTooLong(t *testing.T) {
	in := "data: " + strings.Repeat("x", MaxSSELineBytes+1) + "\n\n"
	_, err := readAllEvents(t, in)
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("want an error for a line over %d bytes, got %v", MaxSSELineBytes, err)
	}
}

func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{
		"data: hello\n\n",
		"data: a\ndata: b\n\n",
		": comment\n\nevent: error\ndata: {}\n\n",
		"data: a\r\n\r\n",
		"data: a\r\rdata: b\r",
		"id: 1\x00\ndata\n\n",
		"data: [DONE]\n",
		"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n",
		"\r\n\r\n\r",
		"event\nid\nretry: x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewSSEReader(bytes.NewReader(in))
		for i := 0; ; i++ {
			if i > len(in)+1 {
				t.Fatalf("more events (%d) than input bytes (%d)", i, len(in))
			}
			ev, err := r.Next()
			if err != nil {
				if _, err2 := r.Next(); err2 == nil {
					t.Fatal("Next succeeded after an error")
				}
				return
			}
			if bytes.ContainsAny(ev.Data, "\r") || strings.ContainsAny(ev.Type, "\r\n") || strings.ContainsAny(ev.ID, "\r\n\x00") {
				t.Fatalf("line terminator leaked into an event: %+v", ev)
			}
		}
	})
}

// openAIStreamBody is a realistic streamed completion: a role chunk, n content chunks, a finish chunk,
// a usage chunk and [DONE].
func openAIStreamBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n")
	for i := 0; i < n; i++ {
		tok, _ := json.Marshal(fmt.Sprintf(" word%d", i))
		fmt.Fprintf(&b, `data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}]}`+"\n\n", tok)
	}
	b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n")
	b.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":200,"total_tokens":212}}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes()
}

// BenchmarkSSEReader measures the event parser alone, per event.
func BenchmarkSSEReader(b *testing.B) {
	body := openAIStreamBody(200)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	events := 0
	for b.Loop() {
		r := NewSSEReader(bytes.NewReader(body))
		for {
			if _, err := r.Next(); err != nil {
				break
			}
			events++
		}
	}
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}

// BenchmarkOpenAIStreamDeltas measures the whole parsing path of a provider stream: SSE events, chunk
// JSON decoding, delta extraction and usage.
func BenchmarkOpenAIStreamDeltas(b *testing.B) {
	body := openAIStreamBody(200)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	ctx := b.Context()
	for b.Loop() {
		s := &openAIStream{provider: "bench", model: "m", ctx: ctx, cancel: func() {},
			body: io.NopCloser(bytes.NewReader(body))}
		s.sse = NewSSEReader(s.body)
		n := 0
		for {
			_, err := s.Next(ctx)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
				break
			}
			n++
		}
		if n != 200 || s.Usage().TokensOut != 200 {
			b.Fatalf("deltas %d usage %+v", n, s.Usage())
		}
	}
}
