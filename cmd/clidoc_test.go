package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/factory-id/station/configs"
)

// TestCLIDocCoversEverything: docs/CLI.md names every command, every flag,
// every variable that is not a config key, and every config key, so the
// repository's one user reference cannot fall behind the code.
func TestCLIDocCoversEverything(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "CLI.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || (c.Parent() != nil && c.Parent().Name() == "completion") {
			return // cobra's own: one line in the doc covers the shells
		}
		if !strings.Contains(doc, "`"+c.CommandPath()) {
			t.Errorf("docs/CLI.md does not show the command %q", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !strings.Contains(doc, "--"+f.Name) {
				t.Errorf("docs/CLI.md does not list %s's flag --%s", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := NewRootCommand("test")
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	walk(root)
	for _, v := range configs.NonKeyEnv {
		if !strings.Contains(doc, "`"+v+"`") {
			t.Errorf("docs/CLI.md does not list the variable %s", v)
		}
	}
	for _, v := range configs.EnvKeys() {
		section, key, _ := strings.Cut(strings.ToLower(strings.TrimPrefix(v, "STATION_")), "_")
		if !strings.Contains(doc, "`"+section+"`") || !strings.Contains(doc, "`"+key+"`") {
			t.Errorf("docs/CLI.md does not list the config key %s.%s", section, key)
		}
	}
}
