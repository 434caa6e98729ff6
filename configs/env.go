package configs

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// The environment variables station reads that are not config keys. This
// is the one list of them: every other STATION_* variable must name a config
// key (STATION_<SECTION>_<KEY>), or it is refused as a misspelling (exit 2).
const (
	// EnvConfig names the config file (--config overrides it).
	EnvConfig = "STATION_CONFIG"
	// EnvCAKeyPassword protects the key a `station ca` command creates.
	EnvCAKeyPassword = "STATION_CA_KEY_PASSWORD"
	// EnvCAIssuerPassword opens the issuer key of `station ca issue-*`.
	EnvCAIssuerPassword = "STATION_CA_ISSUER_PASSWORD"
	// EnvPKIKeyPassword opens pki.issuer_key when it is an encrypted PEM.
	EnvPKIKeyPassword = "STATION_PKI_KEY_PASSWORD"
)

// NonKeyEnv lists the variables above.
var NonKeyEnv = []string{EnvConfig, EnvCAKeyPassword, EnvCAIssuerPassword, EnvPKIKeyPassword}

// EnvKeys returns every STATION_<SECTION>_<KEY> variable that sets a config
// key, sorted.
func EnvKeys() []string {
	var out []string
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		sec := t.Field(i).Tag.Get("yaml")
		if sec == "" || sec == "-" {
			continue
		}
		st := t.Field(i).Type
		for j := 0; j < st.NumField(); j++ {
			if key := st.Field(j).Tag.Get("yaml"); key != "" && key != "-" {
				out = append(out, "STATION_"+strings.ToUpper(sec+"_"+key))
			}
		}
	}
	sort.Strings(out)
	return out
}

// CheckEnv refuses a non-empty STATION_* variable that is neither a config
// key nor one of NonKeyEnv (a misspelt override such as STATION_TPM_ADRESS
// would otherwise be ignored silently), naming it and the nearest known
// name. An empty variable means "not set", as for the keys.
func CheckEnv(env []string) error {
	known := map[string]bool{}
	for _, n := range append(EnvKeys(), NonKeyEnv...) {
		known[n] = true
	}
	for _, kv := range env {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "STATION_") || val == "" || known[name] {
			continue
		}
		msg := fmt.Sprintf("unknown environment variable $%s: not a config key (STATION_<SECTION>_<KEY>) or a variable station reads", name)
		if near := nearest(name, known); near != "" {
			msg += fmt.Sprintf("; did you mean $%s?", near)
		}
		return &Error{Err: fmt.Errorf("%s (unset it or fix its name)", msg)}
	}
	return nil
}

// nearest returns the known name closest to name (edit distance at most 3).
func nearest(name string, known map[string]bool) string {
	best, bestD := "", 4
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
