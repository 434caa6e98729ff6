package cli

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes v as one JSON document (or one JSON line) to w.
func WriteJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// Plural is n and word, with an s unless n is 1: "1 file", "3 files".
func Plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
