package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/crispy-enigma/crispy/gateway/speech"
	"github.com/crispy-enigma/crispy/store"
)

// needSpeechBinaries skips when espeak-ng or the encoders are missing, except in CI, where the
// setup scripts install them and a skip would hide a broken image.
func needSpeechBinaries(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"espeak-ng", "lame", "opusenc"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed (CI=true: the setup scripts must install it)", bin)
			}
			t.Skipf("%s is not installed; POST /tts synthesizes with it (apt-get install espeak-ng lame opus-tools)", bin)
		}
	}
}

// wavFacts checks a RIFF/WAVE file's sizes are true (RIFF size = file length − 8; the data chunk
// runs to the end) and returns its sample rate and data size.
func wavFacts(t *testing.T, b []byte) (rate, dataSize int) {
	t.Helper()
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		t.Fatalf("not a RIFF/WAVE file: % x", b[:min(len(b), 16)])
	}
	if got := binary.LittleEndian.Uint32(b[4:8]); int(got) != len(b)-8 {
		t.Errorf("RIFF size = %d, want %d (file length − 8)", got, len(b)-8)
	}
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:off+8]))
		switch id {
		case "fmt ":
			rate = int(binary.LittleEndian.Uint32(b[off+12 : off+16]))
		case "data":
			if size != len(b)-off-8 {
				t.Errorf("data size = %d, want %d (to the end of the file)", size, len(b)-off-8)
			}
			return rate, size
		}
		off += 8 + size + size%2
	}
	t.Fatal("no data chunk")
	return 0, 0
}

func (ts *toolServer) tts(t *testing.T, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	return ts.do(t, http.MethodPost, "/tts", body, append([]string{"x-tenant-id: speaker", "Content-Type: application/json"}, headers...)...)
}

// docs/api.md "POST /tts": success is binary audio with the right audio/* type and x-trace-id; ours:
// real synthesis (espeak-ng; mp3 and opus by Debian's encoders); wav with true RIFF sizes.
func testTTSSynthesizesRealAudio(t *testing.T, ts *toolServer, _ *toolUpstream) {
	needSpeechBinaries(t)
	tests := []struct {
		format string
		body   string
		check  func(t *testing.T, b []byte)
	}{
		{format: "wav", body: `{"text":"Hello from the tests.","format":"wav"}`, check: func(t *testing.T, b []byte) {
			if rate, _ := wavFacts(t, b); rate != 22050 {
				t.Errorf("sample rate %d, want espeak-ng's 22050", rate)
			}
		}},
		{format: "mp3", body: `{"text":"Hello from the tests."}`, check: func(t *testing.T, b []byte) {
			if bytes.HasPrefix(b, []byte("ID3")) && len(b) > 10 {
				size := int(b[6])<<21 | int(b[7])<<14 | int(b[8])<<7 | int(b[9]) // ID3v2 synchsafe size
				b = b[min(len(b), 10+size):]
			}
			if len(b) < 2 || b[0] != 0xFF || b[1]&0xE0 != 0xE0 {
				t.Errorf("no MPEG frame sync at the start of the audio: % x", b[:min(len(b), 4)])
			}
		}},
		{format: "opus", body: `{"text":"Hello from the tests.","format":"opus","speed":1.5}`, check: func(t *testing.T, b []byte) {
			if !bytes.HasPrefix(b, []byte("OggS")) || !bytes.Contains(b[:min(len(b), 200)], []byte("OpusHead")) {
				t.Errorf("not an Ogg Opus stream: % x", b[:min(len(b), 8)])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			resp, b := ts.tts(t, tt.body, "x-trace-id: tts-"+tt.format)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != speech.ContentType(tt.format) || !strings.HasPrefix(ct, "audio/") {
				t.Errorf("Content-Type = %q, want %q", ct, speech.ContentType(tt.format))
			}
			if resp.Header.Get("x-trace-id") != "tts-"+tt.format {
				t.Errorf("x-trace-id = %q", resp.Header.Get("x-trace-id"))
			}
			if resp.Header.Get("x-tts-characters") != "21" {
				t.Errorf("x-tts-characters = %q, want 21", resp.Header.Get("x-tts-characters"))
			}
			rateLimitHeadersPresent(t, resp.Header)
			tt.check(t, b)
		})
	}

	t.Run("duration grows with the text", func(t *testing.T) {
		_, short := ts.tts(t, `{"text":"One.","format":"wav"}`)
		_, long := ts.tts(t, `{"text":"One. Two three four five six seven eight nine ten.","format":"wav"}`)
		_, ns := wavFacts(t, short)
		_, nl := wavFacts(t, long)
		if nl <= ns {
			t.Errorf("data bytes: long text %d <= short text %d", nl, ns)
		}
	})
	t.Run("characters are counted", func(t *testing.T) {
		if n := counterValue(t, ts.metrics.TTSCharacters.WithLabelValues("speaker")); n < 21*3 {
			t.Errorf("crispy_tts_characters_total{tenant=speaker} = %v, want at least %d", n, 21*3)
		}
		// And in the tenant's ledger, exactly: one speech event per synthesis with its characters,
		// recorded by the Meter's settle work, which follows the response.
		waitSettled(t, ts.mt)
		found := false
		for _, ev := range ts.ledger.kind(store.KindSpeech) {
			if ev.TenantID == "speaker" && ev.Detail["characters"] == len("One. Two three four five six seven eight nine ten.") {
				found = true
			}
		}
		if !found {
			t.Errorf("no speech ledger event with the characters of the long text: %+v", ts.ledger.kind(store.KindSpeech))
		}
	})
}

// docs/api.md "POST /tts": non-POST 405; tts_enabled not true → 403 tts_not_enabled; bad body 400.
func testTTSRefusals(t *testing.T, ts *toolServer, _ *toolUpstream) {
	tests := []struct {
		name, tenant, method, body string
		status                     int
		code                       string
	}{
		{name: "flag absent", tenant: "open", body: `{"text":"hi"}`, status: 403, code: CodeTTSNotEnabled},
		{name: "flag false", tenant: "mute", body: `{"text":"hi"}`, status: 403, code: CodeTTSNotEnabled},
		{name: "GET /tts", method: http.MethodGet, status: 405, code: CodeMethodNotAllowed},
		{name: "no text", body: `{}`, status: 400, code: CodeInvalidRequest},
		{name: "empty text", body: `{"text":""}`, status: 400, code: CodeInvalidRequest},
		{name: "5001 characters", body: `{"text":"` + strings.Repeat("é", 5001) + `"}`, status: 400, code: CodeInvalidRequest},
		{name: "bad format", body: `{"text":"hi","format":"flac"}`, status: 400, code: CodeInvalidRequest},
		{name: "speed 5", body: `{"text":"hi","speed":5}`, status: 400, code: CodeInvalidRequest},
		{name: "speed 0.1", body: `{"text":"hi","speed":0.1}`, status: 400, code: CodeInvalidRequest},
		{name: "text not a string", body: `{"text":5}`, status: 400, code: CodeInvalidRequest},
		{name: "malformed JSON", body: `{"text":`, status: 400, code: CodeInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := ts.do(t, cmpOr(tt.method, http.MethodPost), "/tts", tt.body, "x-tenant-id: "+cmpOr(tt.tenant, "speaker"))
			wantError(t, resp, b, tt.status, tt.code)
		})
	}
	t.Run("5000 characters pass validation", func(t *testing.T) {
		// Checked through validateTTS, not synthesized: 5000 characters take espeak-ng seconds.
		text := strings.Repeat("é", 5000)
		if _, err := validateTTS(&ttsRequest{Text: &text}); err != nil {
			t.Errorf("5000 characters refused: %v", err)
		}
	})
	t.Run("unknown voice", func(t *testing.T) {
		needSpeechBinaries(t)
		// espeak-ng itself falls back to its default voice for an unknown name; the API refuses it.
		resp, b := ts.tts(t, `{"text":"hi","voice":"no-such-voice"}`)
		wantError(t, resp, b, 400, CodeInvalidRequest)
		for _, known := range []string{"en-us", "en", "en+f3"} {
			if resp, b := ts.tts(t, `{"text":"hi","format":"wav","voice":"`+known+`"}`); resp.StatusCode != 200 {
				t.Errorf("voice %s: status %d: %.200s", known, resp.StatusCode, b)
			}
		}
	})
}

// Ours: GET /tts/voices lists the tenant's provider's voices in the envelope.
func testTTSVoices(t *testing.T, ts *toolServer, _ *toolUpstream) {
	needSpeechBinaries(t)
	resp, b := ts.do(t, http.MethodGet, "/tts/voices", "", "x-tenant-id: speaker")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var data struct {
		Voices []speech.Voice `json:"voices"`
	}
	if err := json.Unmarshal(decodeEnvelope(t, resp, b).Data, &data); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range data.Voices {
		found = found || v.ID == "en" || strings.HasPrefix(v.ID, "en-")
	}
	if len(data.Voices) == 0 || !found {
		t.Errorf("voices = %d, want espeak-ng's list with an English voice", len(data.Voices))
	}
	resp, b = ts.do(t, http.MethodGet, "/tts/voices", "", "x-tenant-id: open")
	wantError(t, resp, b, 403, CodeTTSNotEnabled)
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// issue 16: a node without espeak-ng answered /tts with a 500 tts_error (and /readyz with 503).
// The node stays ready (TestHealthViews) and /tts says clearly that speech is unavailable here.
func TestTTSWithoutEngine(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "espeak-ng")
	ts := newToolServer(t, toolServerOpts{
		tenants: []string{flagTenant("speaker", `{"tts_enabled": true}`, "local/extractive")},
		espeak:  speech.EspeakOptions{EspeakPath: missing, LamePath: missing, OpusencPath: missing},
	})
	resp, b := ts.tts(t, `{"text":"hello","format":"wav"}`)
	if env := wantError(t, resp, b, http.StatusServiceUnavailable, CodeTTSUnavailable); strings.Contains(env.Error.Message, missing) {
		t.Errorf("message leaks the path: %q", env.Error.Message)
	}
	resp, b = ts.do(t, http.MethodGet, "/tts/voices", "", "x-tenant-id: speaker")
	wantError(t, resp, b, http.StatusServiceUnavailable, CodeTTSUnavailable)
}
