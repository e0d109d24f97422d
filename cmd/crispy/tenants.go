package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/crispy-enigma/crispy/config"
)

func newTenantsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenants", Short: "Validate, scaffold, deploy, diff and roll back tenant configs; make API keys"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate [dir]",
		Short: "Check every tenants/<name>/tenant.config.json; exit non-zero on any error",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "tenants"
			if len(args) == 1 {
				dir = args[0]
			}
			errs := config.ValidateDir(dir)
			for _, err := range errs {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
			}
			if len(errs) > 0 {
				return fmt.Errorf("%d error(s) in %s", len(errs), dir)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: all tenant configs are valid\n", dir)
			return nil
		},
	})
	key := &cobra.Command{Use: "key", Short: "Manage tenant API keys"}
	key.AddCommand(&cobra.Command{
		Use:   "new <tenant>",
		Short: "Print a fresh API key once, and the sha256: line to put in the tenant's apiKeys",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !config.ValidTenantID(args[0]) {
				return errors.New("tenant IDs match [a-z0-9-]{1,63}")
			}
			k, digest, err := config.NewAPIKey()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "API key for %s (shown once, store it now):\n  %s\n", args[0], k)
			fmt.Fprintf(out, "Add this to tenants/%s/tenant.config.json \"apiKeys\":\n  %q\n", args[0], digest)
			return nil
		},
	})
	cmd.AddCommand(key)
	addDeployCommands(cmd) // deploy.go: deploy, diff, rollback, history, new
	return cmd
}
