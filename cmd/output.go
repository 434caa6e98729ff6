package cmd

import (
	"io"
	"sync/atomic"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/hint"
)

// outcome is what every -o json object reporting an outcome carries (a
// unit's result, a check, a command's document, an error): the exit code
// the outcome is worth (the process's own for a whole document) and the one
// thing to do ("" when there is nothing to do). docs/OUTPUT.md documents it.
type outcome struct {
	ExitCode int    `json:"exit_code"`
	Hint     string `json:"hint"`
}

// outcomeOf is err's outcome: its exit code and hint (0 and "" for nil).
func outcomeOf(err error) outcome {
	if err == nil {
		return outcome{}
	}
	return outcome{code(err), hint.Of(err)}
}

// handleJSON is a TPM handle as JSON writes it: "0x81000001".
type handleJSON = configs.Handle

// errorDocument is what -o json prints on stdout for a command that failed
// before printing a document of its own (docs/schemas/error.json).
type errorDocument struct {
	Error string `json:"error"`
	outcome
}

// watchedWriter remembers whether anything was written through it.
type watchedWriter struct {
	w     io.Writer
	wrote atomic.Bool // batches write from their fixtures' goroutines
}

func (w *watchedWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.wrote.Store(true)
	}
	return w.w.Write(p)
}
