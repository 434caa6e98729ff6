package cmd

import (
	"bufio"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/station"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// repoRoot is the module's root folder (this file's folder's parent).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Dir(filepath.Dir(file))
}

// sentinels returns "pkg.ErrX" for every exported package-level variable
// named Err… in the non-test source of every package of this module that
// the station program links (go list -deps), found by parsing the source:
// a new sentinel is seen without anyone listing it.
func sentinels(t *testing.T) []string {
	t.Helper()
	return sentinelsOf(t, "./cmd/station")
}

// sentinelsOf is sentinels for the program pkg.
func sentinelsOf(t *testing.T, pkg string) []string {
	t.Helper()
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Module.Path}} {{.Dir}}{{end}}", pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var names []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		mod, dir, ok := strings.Cut(sc.Text(), " ")
		if !ok || mod != "github.com/factory-id/station" {
			continue
		}
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range af.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, s := range gd.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						if n.IsExported() && strings.HasPrefix(n.Name, "Err") {
							names = append(names, af.Name.Name+"."+n.Name)
						}
					}
				}
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no sentinels found")
	}
	return names
}

// tableEntries returns the entries of classes as written in errors.go:
// "pkg.ErrX" and the name of its exit code constant, in order.
func tableEntries(t *testing.T) [][2]string {
	t.Helper()
	af, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot(t), "cmd", "errors.go"), nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	ast.Inspect(af, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "classes" {
			return true
		}
		for _, e := range vs.Values[0].(*ast.CompositeLit).Elts {
			el := e.(*ast.CompositeLit).Elts
			sel, ok1 := el[0].(*ast.SelectorExpr)
			code, ok2 := el[1].(*ast.Ident)
			if !ok1 || !ok2 {
				t.Fatalf("entry %d of classes is not {pkg.ErrX, ExitY}", len(out))
			}
			out = append(out, [2]string{sel.X.(*ast.Ident).Name + "." + sel.Sel.Name, code.Name})
		}
		return false
	})
	if len(out) != len(classes) {
		t.Fatalf("parsed %d entries of classes, it has %d", len(out), len(classes))
	}
	return out
}

// TestEverySentinelHasAClass: every sentinel of every package is in the
// table (with exit 1 written out when that is the answer), the table names
// nothing else, and no sentinel is listed twice.
func TestEverySentinelHasAClass(t *testing.T) {
	listed := map[string]bool{}
	for _, e := range tableEntries(t) {
		if listed[e[0]] {
			t.Errorf("%s is listed twice", e[0])
		}
		listed[e[0]] = true
	}
	found := map[string]bool{}
	for _, s := range sentinels(t) {
		found[s] = true
		if !listed[s] {
			t.Errorf("%s has no exit class: add it to classes in cmd/errors.go (with ExitFailed in the exit-1 part if 1 is the answer)", s)
		}
	}
	for s := range listed {
		if !found[s] {
			t.Errorf("classes lists %s, which is not an exported Err… variable of a package station links", s)
		}
	}
}

// TestClassOrder: each sentinel gets its own entry's code, whatever wraps
// it: no entry is hidden by an earlier one (a sentinel that wraps another
// comes first), as revoke's store.ErrNotFound once was.
func TestClassOrder(t *testing.T) {
	names := tableEntries(t)
	for i, c := range classes {
		for j := range i {
			if errors.Is(c.target, classes[j].target) {
				t.Errorf("%s (entry %d) is hidden by %s (entry %d): put the more specific first", names[i][0], i, names[j][0], j)
			}
		}
		for _, err := range []error{c.target, fmt.Errorf("context: %w", c.target), hint.Wrap(c.target, "h"), &station.StepError{Serial: "SN", Step: station.StepSRK, Err: c.target}} {
			if got := code(err); got != c.code {
				t.Errorf("code(%v) = %d, want %d (%s)", err, got, c.code, names[i][0])
			}
		}
	}
}

// TestExitCodes covers what is decided before and after the table.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("anything"), ExitFailed},
		{cli.Usagef("--flag: bad"), ExitUsage},
		{&configs.Error{Key: "tpm.address", Err: tpmops.ErrUnreachable}, ExitUsage}, // the config's fault first
		{&station.StepError{Serial: "SN", Step: station.StepEK, Err: &store.Error{Err: store.ErrBusy}}, ExitEnvironment},
		{errors.Join(&station.StepError{Serial: "SN", Step: station.StepEK, Err: station.ErrDuplicateEK}, &store.Error{Err: store.ErrReplaced}), ExitEnvironment},
		{fmt.Errorf("%w: %w", station.ErrOwnedElsewhere, tpmops.ErrBadAuth), ExitPolicy},
		{silentError{ExitIntegrity}, ExitIntegrity},
	} {
		if got := code(tc.err); got != tc.want && !errors.As(tc.err, new(silentError)) {
			t.Errorf("code(%v) = %d, want %d", tc.err, got, tc.want)
		}
		var b strings.Builder
		if got := Exit(tc.err, &b); got != tc.want {
			t.Errorf("Exit(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestExitPrintsTheWinningHint: Exit prints the error once and the hint
// hint.Of picks (provision's override of tpmops' hint here).
func TestExitPrintsTheWinningHint(t *testing.T) {
	err := &station.StepError{Serial: "SN-1", Step: station.StepSRK, Err: fmt.Errorf("reading the SRK: %w", tpmops.ErrUnreachable)}
	var b strings.Builder
	if got := Exit(err, &b); got != ExitEnvironment {
		t.Fatalf("Exit = %d, want %d", got, ExitEnvironment)
	}
	want := "station: unit SN-1: step srk: reading the SRK: TPM unreachable\nhint: " + hint.Of(err) + "\n"
	if b.String() != want || !strings.Contains(hint.Of(err), "re-run provision for this unit") {
		t.Fatalf("Exit printed %q, want %q with provision's hint", b.String(), want)
	}
}

// TestExitCodesMatchREADME compares the README's exit-code table with the
// Exit… constants and their comments in internal/cli/exit.go.
func TestExitCodesMatchREADME(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var fromREADME [][2]string
	_, rest, ok := strings.Cut(string(readme), "\n## Exit codes\n")
	if !ok {
		t.Fatal("README.md has no '## Exit codes' section")
	}
	for _, line := range strings.Split(rest, "\n") {
		if strings.HasPrefix(line, "## ") {
			break
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 2 || cells[0] == "code" || strings.HasPrefix(cells[0], "---") {
			continue
		}
		fromREADME = append(fromREADME, [2]string{cells[0], cells[1]})
	}

	af, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "internal", "cli", "exit.go"), nil, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var fromGo [][2]string
	for _, d := range af.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			if !strings.HasPrefix(vs.Names[0].Name, "Exit") || vs.Comment == nil {
				continue
			}
			v := vs.Values[0].(*ast.BasicLit).Value
			if _, err := strconv.Atoi(v); err != nil {
				t.Fatalf("%s = %s", vs.Names[0].Name, v)
			}
			fromGo = append(fromGo, [2]string{v, strings.TrimSpace(vs.Comment.Text())})
		}
	}
	if len(fromGo) != 6 {
		t.Fatalf("found %d documented Exit… constants, want 6", len(fromGo))
	}
	if !slices.Equal(fromGo, fromREADME) {
		t.Errorf("README's exit codes differ from internal/cli/exit.go's:\nREADME: %q\nGo:     %q", fromREADME, fromGo)
	}
}
