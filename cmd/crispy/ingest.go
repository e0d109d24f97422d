package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/wire"
)

// ingestExtensions are the file types a folder walk picks up (the parsers' types). A file named
// explicitly on the command line is sent whatever its extension; the server decides.
var ingestExtensions = map[string]bool{
	".txt": true, ".text": true, ".md": true, ".markdown": true, ".html": true, ".htm": true,
	".pdf": true, ".json": true,
}

type ingestOptions struct {
	Server   string
	Tenant   string
	APIKey   string
	Timeout  time.Duration
	NoBar    bool
	Client   *http.Client
	JobPoll  time.Duration
	MaxRetry int // retries of a rate-limited upload
}

func newIngestCmd() *cobra.Command {
	o := ingestOptions{}
	cmd := &cobra.Command{
		Use:   "ingest --tenant T [--server URL] [--api-key K] PATH...",
		Short: "Ingest files and folders (recursively: .txt .md .html .pdf .json) into a tenant's documents through a running node",
		Long: "Uploads each file to POST /ingest of a running node (multipart, one file per request) with a progress bar,\n" +
			"then prints a summary. The docId of a file is its path relative to the folder given (separators become '.'),\n" +
			"or its name for a file given directly. Exits non-zero when any file failed.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.APIKey == "" {
				o.APIKey = config.Getenv("CRISPY_API_KEY")
			}
			return runIngest(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Server, "server", "http://127.0.0.1:8787", "base URL of a running crispy node")
	f.StringVar(&o.Tenant, "tenant", "", "tenant ID (sent as x-tenant-id)")
	f.StringVar(&o.APIKey, "api-key", "", "the tenant's API key (default $CRISPY_API_KEY)")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "time limit per file")
	f.BoolVar(&o.NoBar, "no-progress", false, "no progress bar (one line per file instead)")
	return cmd
}

// ingestFile is one file to send.
type ingestFile struct {
	Path  string
	DocID string
}

// collectIngestFiles expands the arguments: folders recursively (files of known types, hidden
// entries skipped), files as given.
func collectIngestFiles(args []string) ([]ingestFile, error) {
	var out []ingestFile
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			out = append(out, ingestFile{Path: arg, DocID: wire.DocIDFromFilename(filepath.Base(arg))})
			continue
		}
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != arg && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !d.Type().IsRegular() || !ingestExtensions[strings.ToLower(filepath.Ext(path))] {
				return nil
			}
			rel, err := filepath.Rel(arg, path)
			if err != nil {
				return err
			}
			out = append(out, ingestFile{Path: path, DocID: wire.DocIDFromFilename(rel)})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walk %s: %w", arg, err)
		}
	}
	return out, nil
}

// ingestOutcome is what happened to one file.
type ingestOutcome struct {
	File   ingestFile
	Chunks int
	Err    error
}

func runIngest(ctx context.Context, o ingestOptions, args []string, stdout, stderr io.Writer) error {
	if o.Tenant == "" && o.APIKey == "" {
		return errors.New("ingest: --tenant (or --api-key) is required")
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.JobPoll <= 0 {
		o.JobPoll = 500 * time.Millisecond
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = 5
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	o.Server = strings.TrimRight(o.Server, "/")
	files, err := collectIngestFiles(args)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if len(files) == 0 {
		return errors.New("ingest: no files of a supported type (.txt .md .html .pdf .json) found")
	}
	var bar *progressbar.ProgressBar
	if !o.NoBar {
		bar = progressbar.NewOptions(len(files),
			progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("ingesting"),
			progressbar.OptionShowCount(), progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
	}
	outcomes := make([]ingestOutcome, 0, len(files))
	for _, f := range files {
		if ctx.Err() != nil {
			break
		}
		fctx, cancel := context.WithTimeout(ctx, o.Timeout)
		chunks, err := o.upload(fctx, f)
		cancel()
		outcomes = append(outcomes, ingestOutcome{File: f, Chunks: chunks, Err: err})
		if bar != nil {
			_ = bar.Add(1)
		} else if err != nil {
			fmt.Fprintf(stderr, "FAIL %s: %v\n", f.Path, err)
		} else {
			fmt.Fprintf(stderr, "ok   %s → %s (%d chunks)\n", f.Path, f.DocID, chunks)
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	var ok, failed, chunks int
	for _, r := range outcomes {
		if r.Err != nil {
			failed++
			fmt.Fprintf(stdout, "failed: %s (docId %s): %v\n", r.File.Path, r.File.DocID, r.Err)
			continue
		}
		ok++
		chunks += r.Chunks
	}
	skipped := len(files) - len(outcomes)
	fmt.Fprintf(stdout, "ingested %d of %d files (%d chunks), %d failed", ok, len(files), chunks, failed)
	if skipped > 0 {
		fmt.Fprintf(stdout, ", %d not sent (interrupted)", skipped)
	}
	fmt.Fprintln(stdout)
	if failed > 0 || skipped > 0 {
		return fmt.Errorf("ingest: %d of %d files failed", failed+skipped, len(files))
	}
	return nil
}

// envelopeJSON is the API's response envelope.
type envelopeJSON struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// upload sends one file and returns its chunk count. A 429 is retried after Retry-After; a 202
// (a file large enough to become a job) is followed until the job finishes.
func (o ingestOptions) upload(ctx context.Context, f ingestFile) (int, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	_ = w.WriteField("docId", f.DocID)
	_ = w.WriteField("source", filepath.ToSlash(f.Path))
	part, err := w.CreateFormFile("file", filepath.Base(f.Path))
	if err != nil {
		return 0, err
	}
	_, _ = part.Write(data)
	if err := w.Close(); err != nil {
		return 0, err
	}
	for attempt := 0; ; attempt++ {
		status, env, retryAfter, err := o.call(ctx, http.MethodPost, "/ingest", w.FormDataContentType(), buf.Bytes())
		if err != nil {
			return 0, err
		}
		switch {
		case status == http.StatusTooManyRequests && attempt < o.MaxRetry:
			select {
			case <-time.After(retryAfter):
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		case status == http.StatusAccepted:
			var acc struct {
				JobID string `json:"jobId"`
			}
			if err := json.Unmarshal(env.Data, &acc); err != nil || acc.JobID == "" {
				return 0, fmt.Errorf("accepted without a job ID")
			}
			return o.waitJob(ctx, acc.JobID)
		case !env.OK:
			return 0, envelopeError(status, env)
		}
		var batch struct {
			Results []wire.IngestItemResult `json:"results"`
		}
		if err := json.Unmarshal(env.Data, &batch); err != nil || len(batch.Results) != 1 {
			return 0, fmt.Errorf("unexpected response: %s", env.Data)
		}
		return itemResult(batch.Results[0])
	}
}

func itemResult(r wire.IngestItemResult) (int, error) {
	if r.Status != "ingested" {
		if r.Error != nil {
			return 0, fmt.Errorf("%s", errorText(r.Error.Code, r.Error.Message))
		}
		return 0, fmt.Errorf("not ingested (%s)", r.Status)
	}
	return r.Chunks, nil
}

func (o ingestOptions) waitJob(ctx context.Context, id string) (int, error) {
	for {
		status, env, _, err := o.call(ctx, http.MethodGet, "/ingest/jobs/"+id, "", nil)
		if err != nil {
			return 0, err
		}
		if !env.OK {
			return 0, envelopeError(status, env)
		}
		var st wire.JobStatus
		if err := json.Unmarshal(env.Data, &st); err != nil {
			return 0, fmt.Errorf("job %s: %w", id, err)
		}
		switch st.Status {
		case wire.JobDone:
			if len(st.Results) != 1 {
				return 0, fmt.Errorf("job %s finished with %d results", id, len(st.Results))
			}
			return itemResult(st.Results[0])
		case wire.JobFailed:
			return 0, fmt.Errorf("job %s failed: %s", id, st.Error)
		}
		select {
		case <-time.After(o.JobPoll):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (o ingestOptions) call(ctx context.Context, method, path, contentType string, body []byte) (int, envelopeJSON, time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.Server+path, rd)
	if err != nil {
		return 0, envelopeJSON{}, 0, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if o.Tenant != "" {
		req.Header.Set("x-tenant-id", o.Tenant)
	}
	if o.APIKey != "" {
		req.Header.Set("x-api-key", o.APIKey)
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return 0, envelopeJSON{}, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, envelopeJSON{}, 0, err
	}
	var env envelopeJSON
	if err := json.Unmarshal(b, &env); err != nil {
		return 0, envelopeJSON{}, 0, fmt.Errorf("%s %s: HTTP %d, not a crispy response", method, path, resp.StatusCode)
	}
	retry := time.Second
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		retry = time.Duration(s) * time.Second
	}
	return resp.StatusCode, env, retry, nil
}

func envelopeError(status int, env envelopeJSON) error {
	if env.Error == nil {
		return fmt.Errorf("HTTP %d", status)
	}
	return fmt.Errorf("HTTP %d %s", status, errorText(env.Error.Code, env.Error.Message))
}

func errorText(code, msg string) string { return code + ": " + msg }
