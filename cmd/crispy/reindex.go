package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/crispy-enigma/crispy/config"
	"github.com/crispy-enigma/crispy/wire"
)

type reindexOptions struct {
	Admin  string // base URL of the node's operator listener
	Token  string
	Tenant string
	NoBar  bool
	Poll   time.Duration
	Client *http.Client
}

func newReindexCmd() *cobra.Command {
	o := reindexOptions{Poll: 500 * time.Millisecond, Client: &http.Client{Timeout: 30 * time.Second}}
	cmd := &cobra.Command{
		Use:   "reindex --tenant T [--admin URL] [--admin-token TOKEN]",
		Short: "Re-embed a tenant's documents with its embedding model, with a progress bar",
		Long: "Asks a running node (its operator listener, POST /admin/reindex) to re-embed the tenant's stored chunks\n" +
			"with the model its aiModels.embeddings resolves to, then follows the job until it ends. Searches keep using\n" +
			"the old index until the job switches. A node starts the same job on its own when a tenant's model changes;\n" +
			"this command starts it at once (also after a failed job) and shows it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Token == "" {
				o.Token = config.Getenv("CRISPY_ADMIN_TOKEN")
			}
			return runReindex(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Admin, "admin", "http://127.0.0.1:9787", "base URL of the node's operator listener (--admin-addr)")
	f.StringVar(&o.Token, "admin-token", "", "the operator token (default $CRISPY_ADMIN_TOKEN)")
	f.StringVar(&o.Tenant, "tenant", "", "tenant ID")
	f.BoolVar(&o.NoBar, "no-progress", false, "no progress bar")
	_ = cmd.MarkFlagRequired("tenant")
	return cmd
}

// runReindex starts (or joins) the tenant's re-embedding job and follows it to its end.
func runReindex(ctx context.Context, o reindexOptions, stdout, stderr io.Writer) error {
	var acc wire.ReindexAccepted
	if err := o.call(ctx, http.MethodPost, "/admin/reindex?tenant="+url.QueryEscape(o.Tenant), &acc); err != nil {
		return err
	}
	if acc.Status == "current" {
		fmt.Fprintf(stdout, "tenant %s: its index is already its embedding model's; nothing to do\n", o.Tenant)
		return nil
	}
	var bar *progressbar.ProgressBar
	if !o.NoBar {
		bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("re-embedding"),
			progressbar.OptionShowCount(), progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
	}
	path := "/admin/jobs/" + url.PathEscape(o.Tenant) + "/" + url.PathEscape(acc.JobID)
	for {
		var st wire.JobStatus
		if err := o.call(ctx, http.MethodGet, path, &st); err != nil {
			return err
		}
		p := st.Reindex
		if bar != nil && p != nil {
			if p.Total > 0 && bar.GetMax() != p.Total {
				bar.ChangeMax(p.Total)
			}
			bar.Describe("re-embedding (" + p.Phase + ")")
			_ = bar.Set(p.Copied)
		}
		switch st.Status {
		case wire.JobDone:
			if bar != nil {
				_ = bar.Finish()
			}
			if p != nil {
				fmt.Fprintf(stdout, "tenant %s: %d chunks re-embedded with %s (dimension %d); searches use the new index\n",
					o.Tenant, p.Copied, p.To.Model, p.To.Dimension)
			}
			return nil
		case wire.JobFailed:
			if bar != nil {
				_ = bar.Exit()
			}
			return fmt.Errorf("re-embedding job %s failed: %s (the old index keeps serving)", acc.JobID, st.Error)
		}
		select {
		case <-time.After(o.Poll):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// call sends one operator request and decodes its envelope's data into out.
func (o reindexOptions) call(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, o.Admin+path, nil)
	if err != nil {
		return err
	}
	if o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	var env envelopeJSON
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s %s: HTTP %d, not a crispy response", method, path, resp.StatusCode)
	}
	if !env.OK {
		return envelopeError(resp.StatusCode, env)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}
