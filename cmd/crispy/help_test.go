package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestFlagUsageHasNoBackticks: pflag takes a back-quoted word in a flag's usage as the name of
// its value, so "(see `crispy tenants history`)" printed as "--to crispy tenants history".
// No flag of any command may have a back-quote in its usage.
func TestFlagUsageHasNoBackticks(t *testing.T) {
	walk := func(path string, flags ...*pflag.FlagSet) {
		for _, fs := range flags {
			fs.VisitAll(func(f *pflag.Flag) {
				if strings.Contains(f.Usage, "`") {
					t.Errorf("%s --%s: usage has a back-quote: %q", path, f.Name, f.Usage)
				}
			})
		}
	}
	root := newRootCmd()
	cmds := root.Commands()
	walk(root.CommandPath(), root.PersistentFlags(), root.Flags())
	for len(cmds) > 0 {
		c := cmds[0]
		cmds = append(cmds[1:], c.Commands()...)
		walk(c.CommandPath(), c.PersistentFlags(), c.Flags())
	}

	var out bytes.Buffer
	root = newRootCmd()
	root.SetArgs([]string{"tenants", "rollback", "--help"})
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if help := out.String(); !strings.Contains(help, "--to uint") || strings.Contains(help, "--to crispy") {
		t.Fatalf("rollback --help:\n%s", help)
	}
}
