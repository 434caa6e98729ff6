// Package bench times station against the line engineer's script
// (scripts/bench/reference.sh) on the same software TPMs, one process per
// unit, as `make bench` runs it; cmd/benchdoc turns one run's output into
// docs/BENCHMARKS.md. The package holds only tests and benchmarks.
package bench
