# CI runs these targets as they are (.ci/run calls `make test`).
GO      ?= go
PKGS    ?= ./...
TIMEOUT ?= 40m

.PHONY: all build man install test lint bench demo deps clean

all: build

# --version prints what is stamped here (internal/buildinfo); a plain `go build` falls back to the
# toolchain's build information.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/factory-id/station/internal/buildinfo.version=$(VERSION) \
           -X github.com/factory-id/station/internal/buildinfo.commit=$(COMMIT)
PREFIX  ?= /usr/local

# bin/station, and bin/station-audit: the auditor's verifier (docs/AUDITOR.md).
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/station ./cmd/station
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/station-audit ./cmd/station-audit

# Man pages for every command, from the command tree (station docs man).
man: build
	bin/station docs man --out bin/man

# make install [PREFIX=/usr/local]: the programs to PREFIX/bin, the man pages to PREFIX/share/man/man1.
install: build man
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 bin/station bin/station-audit $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 bin/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

deps:
	@scripts/deps.sh

# The race detector needs cgo, which the TPM simulator needs anyway.
test: deps lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout $(TIMEOUT) $(PKGS)
	@# the offline audit verifier must build without cgo and without go-tpm
	CGO_ENABLED=0 $(GO) build ./audit/...
	@! $(GO) list -deps ./audit/... | grep -E 'go-tpm|crypto11|pkcs11' || { echo "audit imports TPM or cgo code" >&2; exit 1; }
	@# the auditor's verifier builds without cgo for the auditor's laptop (docs/AUDITOR.md)
	CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/station-audit
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/station-audit
	GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/station-audit
	GOOS=darwin GOARCH=amd64 CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/station-audit
	@! $(GO) list -deps ./cmd/station-audit | grep -E 'go-tpm|crypto11|pkcs11' || { echo "station-audit imports TPM or cgo code" >&2; exit 1; }

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
