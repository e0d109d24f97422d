package speech

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os/exec"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// espeak-ng's speaking-rate range in words per minute; 175 is its default and our speed 1.0.
const (
	baseWPM = 175
	minWPM  = 80
	maxWPM  = 450
)

// EspeakOptions configures Espeak; zero values take the defaults.
type EspeakOptions struct {
	EspeakPath  string // default "espeak-ng" on PATH
	LamePath    string // default "lame"
	OpusencPath string // default "opusenc"
	// DefaultVoice is used when a request names none (default "en").
	DefaultVoice string
	// MaxOutputBytes bounds every process's output (default 64 MiB: 5000 characters at the slowest
	// rate are about 35 MB of 22 kHz PCM).
	MaxOutputBytes int
}

// Espeak synthesizes with espeak-ng and encodes with lame (MP3) and opusenc (Ogg Opus). The text goes
// to the process on stdin, never through a shell or the argument list.
type Espeak struct {
	opts EspeakOptions

	voicesMu sync.Mutex
	voices   []Voice
}

var _ Synthesizer = (*Espeak)(nil)

// NewEspeak returns an espeak-ng synthesizer. It does not check the binaries: Check does.
func NewEspeak(opts EspeakOptions) *Espeak {
	if opts.EspeakPath == "" {
		opts.EspeakPath = "espeak-ng"
	}
	if opts.LamePath == "" {
		opts.LamePath = "lame"
	}
	if opts.OpusencPath == "" {
		opts.OpusencPath = "opusenc"
	}
	if opts.DefaultVoice == "" {
		opts.DefaultVoice = "en"
	}
	if opts.MaxOutputBytes == 0 {
		opts.MaxOutputBytes = 64 << 20
	}
	return &Espeak{opts: opts}
}

// Check reports which of the binaries are missing, for /health and start-up logs.
func (e *Espeak) Check() error {
	var missing []string
	for _, p := range []string{e.opts.EspeakPath, e.opts.LamePath, e.opts.OpusencPath} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("speech: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// WordsPerMinute maps a speed factor to espeak-ng's -s rate: 175 × speed, clamped to 80–450.
func WordsPerMinute(speed float64) int {
	if speed == 0 {
		speed = 1
	}
	return int(math.Max(minWPM, math.Min(maxWPM, math.Round(baseWPM*speed))))
}

// ErrUnavailable is returned when a binary the request needs is not installed: the node serves
// everything else, and the API answers tts_unavailable rather than a synthesis failure.
var ErrUnavailable = errors.New("speech engine unavailable")

// ErrUnknownVoice is returned (wrapped in ErrInvalidRequest) for a voice espeak-ng does not have.
var ErrUnknownVoice = errors.New("unknown voice")

// Synthesize implements Synthesizer.
func (e *Espeak) Synthesize(ctx context.Context, req Request) (Audio, error) {
	req, err := Normalize(req)
	if err != nil {
		return Audio{}, err
	}
	voice := req.Voice
	if voice == "" {
		voice = e.opts.DefaultVoice
	}
	args := []string{"--stdout", "--stdin", "-b", "1", "-v", voice, "-s", fmt.Sprint(WordsPerMinute(req.Speed))}
	wav, stderr, err := runPipe(ctx, e.opts.EspeakPath, args, []byte(req.Text), e.opts.MaxOutputBytes)
	if err != nil {
		if strings.Contains(stderr, "voice does not exist") {
			return Audio{}, fmt.Errorf("%w: %w %q", ErrInvalidRequest, ErrUnknownVoice, voice)
		}
		return Audio{}, fmt.Errorf("espeak-ng: %w", err)
	}
	info, err := FixWAVHeader(wav)
	if err != nil {
		return Audio{}, fmt.Errorf("espeak-ng output: %w", err)
	}
	wav = wav[:info.DataOffset+info.DataSize]
	audio := Audio{
		ContentType: ContentType(req.Format),
		SampleRate:  info.SampleRate,
		Duration:    info.Duration(),
		Characters:  utf8.RuneCountInString(req.Text),
	}
	switch req.Format {
	case FormatWAV:
		audio.Data = wav
	case FormatMP3:
		// lame reads the (now correct) WAV header from stdin and keeps the 22.05 kHz rate.
		audio.Data, _, err = runPipe(ctx, e.opts.LamePath, []string{"--quiet", "-b", "64", "-", "-"}, wav, e.opts.MaxOutputBytes)
		if err != nil {
			return Audio{}, fmt.Errorf("lame: %w", err)
		}
	case FormatOpus:
		audio.Data, _, err = runPipe(ctx, e.opts.OpusencPath, []string{"--quiet", "--bitrate", "32", "-", "-"}, wav, e.opts.MaxOutputBytes)
		if err != nil {
			return Audio{}, fmt.Errorf("opusenc: %w", err)
		}
	}
	return audio, nil
}

// Voices implements Synthesizer: espeak-ng --voices, read once and remembered (a failure is not).
func (e *Espeak) Voices(ctx context.Context) ([]Voice, error) {
	e.voicesMu.Lock()
	defer e.voicesMu.Unlock()
	if e.voices == nil {
		out, _, err := runPipe(ctx, e.opts.EspeakPath, []string{"--voices"}, nil, 1<<20)
		if err != nil {
			return nil, fmt.Errorf("espeak-ng --voices: %w", err)
		}
		e.voices = parseVoices(out)
	}
	return append([]Voice(nil), e.voices...), nil
}

// parseVoices reads the table of espeak-ng --voices:
// "Pty Language Age/Gender VoiceName File Other Languages".
func parseVoices(out []byte) []Voice {
	var vs []Voice
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] == "Pty" {
			continue
		}
		gender := ""
		if _, g, ok := strings.Cut(f[2], "/"); ok {
			switch g {
			case "M":
				gender = "male"
			case "F":
				gender = "female"
			}
		}
		vs = append(vs, Voice{ID: f[1], Name: strings.ReplaceAll(f[3], "_", " "), Language: f[1], Gender: gender})
	}
	return vs
}

// errOutputTooLarge is returned when a process writes more than its bound.
var errOutputTooLarge = errors.New("output exceeds the size limit")

// runPipe runs name with args, stdin as its input, and returns at most max bytes of its stdout and
// the first 4 KiB of its stderr. It kills the process when ctx ends or the output passes max.
func runPipe(ctx context.Context, name string, args []string, stdin []byte, max int) ([]byte, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	stderr := &capped{max: 4096}
	cmd.Stderr = stderr
	cmd.WaitDelay = 2 * time.Second // do not hang on pipes a killed child's children keep open
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", fmt.Errorf("stdout pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("%w: start %s: %w", ErrUnavailable, name, err)
		}
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	out, readErr := io.ReadAll(io.LimitReader(stdout, int64(max)+1))
	tooLarge := len(out) > max
	if tooLarge {
		cancel()
		io.Copy(io.Discard, stdout) // let the killed process's pipe drain so Wait returns
	}
	waitErr := cmd.Wait()
	switch {
	case tooLarge:
		return nil, stderr.String(), errOutputTooLarge
	case ctx.Err() != nil:
		return nil, stderr.String(), ctx.Err()
	case readErr != nil:
		return nil, stderr.String(), fmt.Errorf("read output: %w", readErr)
	case waitErr != nil:
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return nil, msg, fmt.Errorf("%w: %s", waitErr, msg)
		}
		return nil, msg, waitErr
	}
	return out, stderr.String(), nil
}

// capped keeps the first max bytes written and discards the rest without failing the writer.
type capped struct {
	max int
	buf bytes.Buffer
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (c *capped) String() string { return c.buf.String() }
