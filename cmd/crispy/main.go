// Command crispy is the crispy-enigma server and its operator tools, in one binary.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "crispy:", err)
		var coded interface{ ExitCode() int } // e.g. `tenants diff`: 1 = drift, 2 = error
		if errors.As(err, &coded) {
			os.Exit(coded.ExitCode())
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "crispy",
		Short:         "crispy-enigma: a multi-tenant AI platform server",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newServeCmd(), newTenantsCmd())
	root.AddCommand(newIngestCmd(), newReindexCmd())
	root.AddCommand(newBenchCmd()) // bench.go
	return root
}
