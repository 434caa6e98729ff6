# CI runs these targets as they are (.ci/run calls `make test`).
GO      ?= go
PKGS    ?= ./...
TIMEOUT ?= 40m

.PHONY: all build test lint bench demo deps clean

all: build

build:
	$(GO) build -o bin/station ./cmd/station

deps:
	@scripts/deps.sh

# The race detector needs cgo, which the TPM simulator needs anyway.
test: deps lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout $(TIMEOUT) $(PKGS)
	@# the offline audit verifier must build without cgo and without go-tpm
	CGO_ENABLED=0 $(GO) build ./audit/...
	@! $(GO) list -deps ./audit/... | grep -E 'go-tpm|crypto11|pkcs11' || { echo "audit imports TPM or cgo code" >&2; exit 1; }

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:" $$out >&2; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# Every benchmark once, its output kept in bin/bench.txt, then docs/BENCHMARKS.md written from that run
# (internal/bench/benchdoc). BENCH_UNITS=N: units each for station and the reference script (default 7).
bench: deps
	@mkdir -p bin
	CGO_ENABLED=1 $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m $(PKGS) > bin/bench.txt 2>&1; \
	  status=$$?; cat bin/bench.txt; exit $$status
	$(GO) run ./internal/bench/benchdoc -in bin/bench.txt -out docs/BENCHMARKS.md

demo:
	CGO_ENABLED=1 $(GO) run ./cmd/station demo --units 5

clean:
	rm -rf bin
