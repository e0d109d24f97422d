package openai

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestChatMessageContent(t *testing.T) {
	str := func(s string) *string { return &s }
	cases := []struct {
		name, in string
		want     *string
		wantErr  error
	}{
		{"string", `{"role":"user","content":"hi"}`, str("hi"), nil},
		{"null", `{"role":"assistant","content":null}`, nil, nil},
		{"absent", `{"role":"assistant"}`, nil, nil},
		{"text parts joined", `{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}`, str("a\nb"), nil},
		{"image refused", `{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}`, nil, ErrNonTextContent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m ChatMessage
			err := json.Unmarshal([]byte(tc.in), &m)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil && !cmp.Equal(m.Content, tc.want) {
				t.Errorf("content %v, want %v", m.Content, tc.want)
			}
		})
	}
}

func TestChatRequestDecoding(t *testing.T) {
	cases := []struct {
		name, in  string
		stop      []string
		limit     int
		withUsage bool
	}{
		{"stop string", `{"stop":"x","max_tokens":5}`, []string{"x"}, 5, false},
		{"stop array, max_completion_tokens wins", `{"stop":["a","b"],"max_tokens":5,"max_completion_tokens":7}`, []string{"a", "b"}, 7, false},
		{"include_usage", `{"stream":true,"stream_options":{"include_usage":true}}`, nil, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r ChatCompletionRequest
			if err := json.Unmarshal([]byte(tc.in), &r); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.stop, []string(r.Stop)); diff != "" {
				t.Errorf("stop: %s", diff)
			}
			if r.OutputLimit() != tc.limit || r.IncludeUsage() != tc.withUsage {
				t.Errorf("limit %d usage %v", r.OutputLimit(), r.IncludeUsage())
			}
		})
	}
	for in, param := range map[string]string{
		`{"stop":5}`: "stop",
		`{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`: "messages",
	} {
		var r ChatCompletionRequest
		var pe *ParamError
		if err := json.Unmarshal([]byte(in), &r); !errors.As(err, &pe) || pe.Param != param {
			t.Errorf("%s: %v, want a ParamError naming %s", in, err, param)
		}
	}
}

func TestEmbeddingInput(t *testing.T) {
	cases := []struct {
		in     string
		texts  []string
		tokens bool
	}{
		{`"a"`, []string{"a"}, false},
		{`["a","b"]`, []string{"a", "b"}, false},
		{`[1,2,3]`, nil, true},
		{`[[1,2],[3]]`, nil, true},
	}
	for _, tc := range cases {
		var in EmbeddingInput
		if err := json.Unmarshal([]byte(tc.in), &in); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !cmp.Equal(in.Texts, tc.texts) || in.Tokens != tc.tokens {
			t.Errorf("%s: %+v", tc.in, in)
		}
	}
}

func TestBase64VectorRoundTrip(t *testing.T) {
	v := []float32{0, 1, -1.5, 3.25e-7}
	// OpenAI's own encoding of [1] is the little-endian bytes 00 00 80 3f.
	if got := Base64Vector([]float32{1}); got != "AACAPw==" {
		t.Errorf("Base64Vector([1]) = %q", got)
	}
	back, err := DecodeBase64Vector(Base64Vector(v))
	if err != nil || !cmp.Equal(back, v) {
		t.Errorf("round trip: %v, %v", back, err)
	}
}

func TestSpeechMapping(t *testing.T) {
	formats := []struct {
		in, want string
		ok       bool
	}{{"", "mp3", true}, {"mp3", "mp3", true}, {"wav", "wav", true}, {"opus", "opus", true}, {"aac", "", false}, {"flac", "", false}, {"pcm", "", false}}
	for _, f := range formats {
		if got, ok := SpeechFormat(f.in); got != f.want || ok != f.ok {
			t.Errorf("SpeechFormat(%q) = %q, %v", f.in, got, ok)
		}
	}
	seen := map[string]string{}
	for _, v := range OpenAIVoices() {
		e := EspeakVoice(v)
		if e == v {
			t.Errorf("%s is not mapped", v)
		}
		if other, dup := seen[e]; dup {
			t.Errorf("%s and %s both map to %s", v, other, e)
		}
		seen[e] = v
	}
	if EspeakVoice("NOVA") != EspeakVoice("nova") || EspeakVoice("en-gb") != "en-gb" {
		t.Error("case folding or pass-through broken")
	}
}

func TestResponseInput(t *testing.T) {
	var r ResponseRequest
	in := `{"input":[{"role":"developer","content":"be brief"},{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]},
		{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"42"}],"store":false}`
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	want := []InputItem{
		{Type: "message", Role: "developer", Text: "be brief"},
		{Type: "message", Role: "user", Text: "hi"},
		{Type: "function_call", CallID: "c1", Name: "f", Arguments: "{}"},
		{Type: "function_call_output", CallID: "c1", Text: "42"},
	}
	if diff := cmp.Diff(want, r.Input.Items); diff != "" {
		t.Error(diff)
	}
	if r.Stored() {
		t.Error("store:false is stored")
	}
	if err := json.Unmarshal([]byte(`{"input":[{"type":"reasoning"}]}`), &r); err == nil {
		t.Error("an unsupported item type decoded")
	}
}

func TestErrorShape(t *testing.T) {
	cases := []struct {
		status            int
		code, param, want string
	}{
		{400, CodeInvalidValue, "temperature", `{"error":{"message":"m","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}`},
		{401, CodeInvalidAPIKey, "", `{"error":{"message":"m","type":"authentication_error","param":null,"code":"invalid_api_key"}}`},
		{403, CodeModelNotAllowed, "model", `{"error":{"message":"m","type":"permission_error","param":"model","code":"model_not_allowed"}}`},
		{404, CodeModelNotFound, "model", `{"error":{"message":"m","type":"not_found_error","param":"model","code":"model_not_found"}}`},
		{429, CodeInsufficientQuota, "", `{"error":{"message":"m","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`},
		{500, "", "", `{"error":{"message":"m","type":"server_error","param":null,"code":null}}`},
	}
	for _, tc := range cases {
		b, _ := json.Marshal(NewError(tc.status, tc.code, tc.param, "m"))
		if string(b) != tc.want {
			t.Errorf("%d: %s\nwant %s", tc.status, b, tc.want)
		}
	}
}

func TestSSEWriter(t *testing.T) {
	rec := httptest.NewRecorder()
	SetSSEHeaders(rec.Header())
	w := NewSSEWriter(rec)
	_ = w.Data(map[string]string{"a": "line\nbreak"})
	_ = w.Event("response.completed", map[string]int{"n": 1})
	_ = w.Done()
	want := "data: {\"a\":\"line\\nbreak\"}\n\nevent: response.completed\ndata: {\"n\":1}\n\ndata: [DONE]\n\n"
	if rec.Body.String() != want || rec.Header().Get("Content-Type") != "text/event-stream" || !rec.Flushed {
		t.Errorf("%q", rec.Body.String())
	}
	if w.Err() != nil {
		t.Error(w.Err())
	}
}

// Held events stay in the response's buffer until Flush, or for the handler's return to send (still
// held, or after Done), and the stream's bytes are the same.
func TestSSEWriterHold(t *testing.T) {
	tests := []struct {
		name string
		end  func(w *SSEWriter) error
		want string
		// flushed: the end flushes, and events after it are flushed at once (the hold ended)
		flushed bool
	}{
		{"flush", (*SSEWriter).Flush, "data: 1\n\ndata: 2\n\n", true},
		{"held to the end", func(w *SSEWriter) error { w.Hold(); return nil }, "data: 1\n\ndata: 2\n\n", false},
		{"done", (*SSEWriter).Done, "data: 1\n\ndata: 2\n\ndata: [DONE]\n\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			w := NewSSEWriter(rec)
			w.Hold()
			_ = w.Data(1)
			_ = w.Data(2)
			if rec.Flushed {
				t.Fatal("a held event was flushed")
			}
			if err := tt.end(w); err != nil {
				t.Fatal(err)
			}
			if rec.Flushed != tt.flushed || rec.Body.String() != tt.want {
				t.Fatalf("flushed %t, body %q, want %t, %q", rec.Flushed, rec.Body.String(), tt.flushed, tt.want)
			}
			rec.Flushed = false
			_ = w.Data(3)
			if rec.Flushed != tt.flushed {
				t.Fatalf("an event after the end: flushed %t, want %t", rec.Flushed, tt.flushed)
			}
		})
	}
}

func TestSSEWriterPush(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewSSEWriter(rec)
	w.Hold()
	if err := w.Push(); err != nil || rec.Flushed {
		t.Fatalf("Push with nothing held: flushed %t, err %v", rec.Flushed, err)
	}
	_ = w.Data(1)
	_ = w.Data(2)
	if rec.Flushed {
		t.Fatal("a held event was flushed")
	}
	if err := w.Push(); err != nil || !rec.Flushed || rec.Body.String() != "data: 1\n\ndata: 2\n\n" {
		t.Fatalf("Push: flushed %t, body %q, err %v", rec.Flushed, rec.Body.String(), err)
	}
	rec.Flushed = false
	_ = w.Data(3) // still holding after Push
	if rec.Flushed {
		t.Fatal("an event after Push was flushed: Push ended the hold")
	}
	if err := w.Done(); err != nil || rec.Flushed || !strings.HasSuffix(rec.Body.String(), "data: 3\n\ndata: [DONE]\n\n") {
		t.Fatalf("Done: flushed %t (want the handler's return to send it), body %q, err %v", rec.Flushed, rec.Body.String(), err)
	}
}

func FuzzResponseInput(f *testing.F) {
	for _, s := range []string{`"hi"`, `[{"role":"user","content":"x"}]`, `[{"type":"function_call_output","output":[{"type":"input_text","text":"a"}]}]`, `[1]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var in ResponseInput
		_ = json.Unmarshal([]byte(s), &in)
		var m ChatMessage
		_ = json.Unmarshal([]byte(s), &m)
		var e EmbeddingInput
		_ = json.Unmarshal([]byte(s), &e)
	})
}
