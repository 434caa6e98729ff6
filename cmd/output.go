package cmd

import (
	"encoding/json"
	"io"
)

// writeJSON writes v as one JSON document (or one JSON line) to w.
func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
