package configs

import (
	"fmt"
	"path/filepath"
	"strings"
)

// The grammar of a flash target list (flash.target, --flash, a batch row's
// flash column, the target a unit record keeps) lives here rather than in
// package flash because flash imports configs (its tools and *Error):
// configs is the lowest package that every reader of a list imports.

// Flash target kinds.
const (
	TargetDir   = "dir"    // dir:PATH
	TargetExec  = "exec"   // exec:NAME or exec:NAME@PORT
	TargetTPMNV = "tpm-nv" // tpm-nv
)

// FlashTarget is one entry of a flash target list.
type FlashTarget struct {
	Spec string // the entry as written, trimmed: "dir:/mnt/unit", "exec:esp@/dev/ttyUSB1", "tpm-nv"
	Kind string // TargetDir, TargetExec or TargetTPMNV
	// Path (dir:) is the folder; it may hold {serial}, in its last
	// element only.
	Path string
	// Tool (exec:) is the name under flash.tools; Port is the @PORT given
	// (HasPort), which replaces the tool's configured port.
	Tool    string
	Port    string
	HasPort bool
}

// ParseTargets parses a comma-separated flash target list: dir:PATH,
// exec:NAME[@PORT] naming a tool under f.Tools, tpm-nv; blank entries are
// skipped, an entry listed twice or no entry at all is refused. A dir:
// path cannot hold a comma, a control character or a placeholder other
// than {serial}. Errors are *Error for flash.target.
func (f Flash) ParseTargets(spec string) ([]FlashTarget, error) {
	var ts []FlashTarget
	seen := map[string]bool{}
	for _, s := range strings.Split(spec, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if seen[s] {
			return nil, targetErr("%q listed twice", s)
		}
		seen[s] = true
		t := FlashTarget{Spec: s}
		var arg string
		t.Kind, arg, _ = strings.Cut(s, ":")
		switch t.Kind {
		case TargetDir:
			if err := checkDirPath(arg); err != nil {
				return nil, err
			}
			t.Path = arg
		case TargetExec:
			t.Tool, t.Port, t.HasPort = strings.Cut(arg, "@")
			if _, ok := f.Tools[t.Tool]; !ok {
				return nil, targetErr("%q: no tool %q under flash.tools", s, t.Tool)
			}
		case TargetTPMNV:
			if arg != "" {
				return nil, targetErr("%q: tpm-nv takes no argument (the index is flash.nv_index)", s)
			}
		default:
			return nil, targetErr("%q: want dir:PATH, exec:NAME or tpm-nv", s)
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return nil, targetErr("no flash target")
	}
	return ts, nil
}

func checkDirPath(path string) error {
	if path == "" {
		return targetErr("dir: needs a folder")
	}
	if strings.ContainsAny(path, "\x00\n\r") {
		return targetErr("dir:%q: control characters in the path", path)
	}
	if strings.Contains(filepath.Dir(path), "{serial}") {
		return targetErr("dir:%s: {serial} may only be in the last path element", path)
	}
	if strings.ContainsAny(strings.ReplaceAll(path, "{serial}", ""), "{}") {
		return targetErr("dir:%s: the only placeholder is {serial}", path)
	}
	return nil
}

func targetErr(format string, args ...any) error {
	return &Error{Key: "flash.target", Err: fmt.Errorf(format, args...)}
}
