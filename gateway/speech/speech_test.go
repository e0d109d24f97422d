package speech

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/crispy-enigma/crispy/config"
)

// requireBinaries skips a test when a binary is missing, except in CI (CI=true), where the setup
// scripts install them and a missing one is a failure.
func requireBinaries(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed (CI=true): apt-get install -y espeak-ng lame opus-tools", n)
			}
			t.Skipf("%s not installed: apt-get install -y espeak-ng lame opus-tools", n)
		}
	}
}

// wavFacts reads a canonical 44-byte-header PCM WAV independently of FixWAVHeader.
type wavFacts struct {
	riffSize, dataSize, sampleRate, byteRate uint32
}

func readWAV(t *testing.T, b []byte) wavFacts {
	t.Helper()
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" || string(b[12:16]) != "fmt " || string(b[36:40]) != "data" {
		t.Fatalf("not a canonical RIFF/WAVE file: % x", b[:min(len(b), 44)])
	}
	return wavFacts{
		riffSize:   binary.LittleEndian.Uint32(b[4:]),
		sampleRate: binary.LittleEndian.Uint32(b[24:]),
		byteRate:   binary.LittleEndian.Uint32(b[28:]),
		dataSize:   binary.LittleEndian.Uint32(b[40:]),
	}
}

func synth(t *testing.T, e *Espeak, req Request) Audio {
	t.Helper()
	a, err := e.Synthesize(context.Background(), req)
	if err != nil {
		t.Fatalf("Synthesize(%+v): %v", req, err)
	}
	return a
}

func TestEspeakWAVHasTrueSizes(t *testing.T) {
	requireBinaries(t, "espeak-ng")
	a := synth(t, NewEspeak(EspeakOptions{}), Request{Text: "Hello from crispy enigma.", Format: FormatWAV})
	w := readWAV(t, a.Data)
	if w.sampleRate != 22050 || a.SampleRate != 22050 {
		t.Errorf("sample rate header %d, Audio %d; want 22050", w.sampleRate, a.SampleRate)
	}
	if int(w.dataSize) != len(a.Data)-44 {
		t.Errorf("data size %d, want %d (the bytes that follow the header)", w.dataSize, len(a.Data)-44)
	}
	if int(w.riffSize) != len(a.Data)-8 {
		t.Errorf("RIFF size %d, want %d", w.riffSize, len(a.Data)-8)
	}
	wantDur := time.Duration(int64(w.dataSize) * int64(time.Second) / int64(w.byteRate))
	if a.Duration != wantDur || a.Duration <= 0 {
		t.Errorf("Duration %v, want %v from the data size", a.Duration, wantDur)
	}
	if a.ContentType != "audio/wav" || a.Characters != len("Hello from crispy enigma.") {
		t.Errorf("ContentType %q Characters %d", a.ContentType, a.Characters)
	}
}

func TestEspeakDurationGrowsWithTextAndShrinksWithSpeed(t *testing.T) {
	requireBinaries(t, "espeak-ng")
	e := NewEspeak(EspeakOptions{})
	short := synth(t, e, Request{Text: "One sentence.", Format: FormatWAV})
	long := synth(t, e, Request{Text: "One sentence. And then a second, longer sentence that keeps going for a while.", Format: FormatWAV})
	if long.Duration <= short.Duration {
		t.Errorf("longer text: %v, shorter text: %v; want longer audio", long.Duration, short.Duration)
	}
	text := "The quick brown fox jumps over the lazy dog, twice, for good measure."
	normal := synth(t, e, Request{Text: text, Format: FormatWAV, Speed: 1})
	fast := synth(t, e, Request{Text: text, Format: FormatWAV, Speed: 2})
	if fast.Duration >= normal.Duration {
		t.Errorf("speed 2.0: %v, speed 1.0: %v; want shorter", fast.Duration, normal.Duration)
	}
}

func TestEspeakMP3(t *testing.T) {
	requireBinaries(t, "espeak-ng", "lame")
	a := synth(t, NewEspeak(EspeakOptions{}), Request{Text: "Testing the MP3 encoder."})
	if a.ContentType != "audio/mpeg" {
		t.Errorf("ContentType %q, want audio/mpeg (mp3 is the default)", a.ContentType)
	}
	b := a.Data
	if len(b) > 10 && string(b[:3]) == "ID3" {
		// Skip an ID3v2 tag: 10-byte header plus a syncsafe size.
		size := int(b[6])<<21 | int(b[7])<<14 | int(b[8])<<7 | int(b[9])
		b = b[10+size:]
	}
	if len(b) < 4 || b[0] != 0xFF || b[1]&0xE0 != 0xE0 {
		t.Fatalf("no MPEG frame sync at the start: % x", b[:min(len(b), 4)])
	}
	if a.Duration <= 0 || a.SampleRate != 22050 {
		t.Errorf("Duration %v SampleRate %d", a.Duration, a.SampleRate)
	}
}

func TestEspeakOpus(t *testing.T) {
	requireBinaries(t, "espeak-ng", "opusenc")
	a := synth(t, NewEspeak(EspeakOptions{}), Request{Text: "Testing the Opus encoder.", Format: FormatOpus})
	if a.ContentType != "audio/ogg" {
		t.Errorf("ContentType %q", a.ContentType)
	}
	if len(a.Data) < 36 || string(a.Data[:4]) != "OggS" || string(a.Data[28:36]) != "OpusHead" {
		t.Fatalf("not Ogg Opus: % x", a.Data[:min(len(a.Data), 36)])
	}
}

func TestEspeakTextIsDataNotArguments(t *testing.T) {
	requireBinaries(t, "espeak-ng")
	e := NewEspeak(EspeakOptions{})
	marker := t.TempDir() + "/pwned"
	for _, text := range []string{"--version", "-v xx", "$(touch " + marker + ")", "`touch " + marker + "`; echo hi"} {
		a := synth(t, e, Request{Text: text, Format: FormatWAV})
		if a.Duration <= 0 {
			t.Errorf("%q: no audio", text)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("text was executed by a shell")
	}
}

func TestEspeakUnknownVoiceIsInvalidRequest(t *testing.T) {
	requireBinaries(t, "espeak-ng")
	_, err := NewEspeak(EspeakOptions{}).Synthesize(context.Background(), Request{Text: "hi", Voice: "zz-nope", Format: FormatWAV})
	if !errors.Is(err, ErrInvalidRequest) || !errors.Is(err, ErrUnknownVoice) {
		t.Fatalf("err = %v, want ErrInvalidRequest and ErrUnknownVoice", err)
	}
}

func TestEspeakOutputIsBounded(t *testing.T) {
	requireBinaries(t, "espeak-ng")
	_, err := NewEspeak(EspeakOptions{MaxOutputBytes: 2000}).Synthesize(context.Background(), Request{Text: "This sentence makes far more than two thousand bytes of audio.", Format: FormatWAV})
	if !errors.Is(err, errOutputTooLarge) {
		t.Fatalf("err = %v, want the size limit", err)
	}
}

func TestEspeakHonoursCancelledContext(t *testing.T) {
	requireBinaries(t, "espeak-ng")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewEspeak(EspeakOptions{}).Synthesize(ctx, Request{Text: "hello", Format: FormatWAV}); err == nil {
		t.Fatal("Synthesize with a cancelled context succeeded")
	}
}

func TestEspeakVoices(t *testing.T) {
	requireBinaries(t, "espeak-ng")
	vs, err := NewEspeak(EspeakOptions{}).Voices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range vs {
		found = found || v.ID == "en-us"
		if v.ID == "" || v.Name == "" {
			t.Errorf("empty voice %+v", v)
		}
	}
	if !found {
		t.Errorf("en-us not among %d voices", len(vs))
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		wantErr bool
		want    Request
	}{
		{"defaults", Request{Text: "hi"}, false, Request{Text: "hi", Format: "mp3", Speed: 1}},
		{"empty text", Request{}, true, Request{}},
		{"5000 characters", Request{Text: strings.Repeat("é", 5000)}, false, Request{Text: strings.Repeat("é", 5000), Format: "mp3", Speed: 1}},
		{"5001 characters", Request{Text: strings.Repeat("a", 5001)}, true, Request{}},
		{"bad format", Request{Text: "hi", Format: "flac"}, true, Request{}},
		{"speed too low", Request{Text: "hi", Speed: 0.2}, true, Request{}},
		{"speed too high", Request{Text: "hi", Speed: 4.1}, true, Request{}},
		{"speed bounds", Request{Text: "hi", Speed: 4, Format: "wav"}, false, Request{Text: "hi", Speed: 4, Format: "wav"}},
		{"voice that looks like a flag", Request{Text: "hi", Voice: "--stdout"}, true, Request{}},
		{"voice with a variant", Request{Text: "hi", Voice: "en-us+f3"}, false, Request{Text: "hi", Voice: "en-us+f3", Format: "mp3", Speed: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.req)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidRequest) {
					t.Fatalf("err = %v, want ErrInvalidRequest", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Normalize = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestWordsPerMinute(t *testing.T) {
	for speed, want := range map[float64]int{0: 175, 1: 175, 2: 350, 0.25: 80, 0.5: 88, 4: 450} {
		if got := WordsPerMinute(speed); got != want {
			t.Errorf("WordsPerMinute(%v) = %d, want %d", speed, got, want)
		}
	}
}

func TestFixWAVHeaderRewritesPlaceholderSizes(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(0x7ffff024)) // espeak-ng's streaming placeholder
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(22050), uint32(44100), uint16(2), uint16(16)} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, uint32(0x7ffff000))
	b.Write(make([]byte, 44100+1)) // one second and a stray half sample
	data := b.Bytes()
	info, err := FixWAVHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	if info.DataSize != 44100 || info.Duration() != time.Second || info.SampleRate != 22050 {
		t.Errorf("info = %+v, duration %v", info, info.Duration())
	}
	if got := binary.LittleEndian.Uint32(data[40:]); got != 44100 {
		t.Errorf("data size field %d", got)
	}
	if got := binary.LittleEndian.Uint32(data[4:]); got != 36+44100 {
		t.Errorf("RIFF size field %d", got)
	}
	for _, bad := range [][]byte{nil, []byte("RIFF1234WAVX"), []byte("RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00")} {
		if _, err := FixWAVHeader(bad); err == nil {
			t.Errorf("FixWAVHeader(%q) succeeded", bad)
		}
	}
}

func TestOpenAICompatible(t *testing.T) {
	var got map[string]any
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/audio/speech" || r.Method != http.MethodPost {
			http.Error(w, "wrong route", http.StatusNotFound)
			return
		}
		auth = r.Header.Get("Authorization")
		json.NewDecoder(r.Body).Decode(&got)
		if got["input"] == "fail" {
			http.Error(w, `{"error":"overloaded"}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "audio/mpeg")
		w.Write([]byte{0xFF, 0xF3, 0x44, 0xC4, 1, 2, 3})
	}))
	defer srv.Close()

	p := NewOpenAICompatible(srv.URL+"/v1/", "sk-test", "tts-1", nil, srv.Client())
	a, err := p.Synthesize(context.Background(), Request{Text: "héllo", Voice: "nova", Speed: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"model": "tts-1", "input": "héllo", "voice": "nova", "response_format": "mp3", "speed": 1.5}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("request %s = %v, want %v", k, got[k], v)
		}
	}
	if auth != "Bearer sk-test" {
		t.Errorf("Authorization %q", auth)
	}
	if a.ContentType != "audio/mpeg" || len(a.Data) != 7 || a.Characters != 5 {
		t.Errorf("audio = %+v", a)
	}
	if _, err := p.Synthesize(context.Background(), Request{Text: "fail"}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("upstream 503: err = %v", err)
	}
	if _, err := p.Synthesize(context.Background(), Request{Text: "hi", Speed: 9}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("speed 9: err = %v, want ErrInvalidRequest before any call", err)
	}
	vs, _ := p.Voices(context.Background())
	if len(vs) != 6 {
		t.Errorf("voices = %v", vs)
	}
}

// recordingSynth records the model it was asked for.
type recordingSynth struct {
	Synthesizer
	name  string
	model string
}

func (r *recordingSynth) Synthesize(ctx context.Context, req Request) (Audio, error) {
	r.model = req.Model
	return Audio{ContentType: r.name}, nil
}

func TestRouter(t *testing.T) {
	local := &recordingSynth{name: "local"}
	openai := &recordingSynth{name: "openai"}
	oai2 := &recordingSynth{name: "openai-eu"}
	r := NewRouter(local)
	r.Handle("openai/", openai)
	r.Handle("openai/eu/", oai2)
	tests := []struct {
		tts, wantName, wantModel string
		wantOK                   bool
	}{
		{"", "local", "", true},
		{LocalModel, "local", "", true},
		{"openai/tts-1", "openai", "tts-1", true},
		{"openai/eu/tts-1-hd", "openai-eu", "tts-1-hd", true},
		{"elevenlabs/v2", "local", "", false},
	}
	for _, tc := range tests {
		s, ok := r.For(&config.TenantConfig{AIModels: config.AIModels{TTS: tc.tts}})
		a, _ := s.Synthesize(context.Background(), Request{Text: "x"})
		var model string
		switch a.ContentType {
		case "openai":
			model = openai.model
		case "openai-eu":
			model = oai2.model
		}
		if a.ContentType != tc.wantName || model != tc.wantModel || ok != tc.wantOK {
			t.Errorf("tts %q → %s model %q ok %v; want %s %q %v", tc.tts, a.ContentType, model, ok, tc.wantName, tc.wantModel, tc.wantOK)
		}
	}
}
