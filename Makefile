# jailgate — make help lists the targets.
GO       ?= go
BIN      := bin/jailgate
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Static builds: the SFTP server is this binary started inside a tenant's
# environment, where her libc may be missing or hers. A plain go build with
# cgo works too (libcap's psx drops the init's capabilities on every thread).
NOCGO    := CGO_ENABLED=0
UNIT_PKGS := ./config/... ./keys/... ./gateway/... ./rootfs/... ./provision/... ./statedir/... ./internal/... ./jail/jailtest/...
ROOT_PKGS := ./jail/ ./cmd/...

.PHONY: help build demo test test-unit test-root test-slow vet staticcheck fmt-check tidy-check lint fuzz bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# The environment init is built on its own (only the jail package: ~1 MiB
# less per environment) and embedded in bin/jailgate; see jail.SealedInit.
INIT_BIN := cmd/jailgate/initbin/jailgate-init

build: ## build bin/jailgate (with its environment init embedded)
	$(NOCGO) $(GO) build -trimpath -o $(INIT_BIN) ./cmd/jailgate/initbin
	$(NOCGO) $(GO) build -trimpath -tags embedinit -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/jailgate

demo: build ## build a demo rootfs, keys and config, then serve on 127.0.0.1:2222
	./scripts/demo.sh

test: test-unit test-root ## run every test (as root: the jail tests need it)

test-unit: ## tests of config, keys, gateway (fake jail) and rootfs, with -race
	$(GO) test -race -count=1 $(UNIT_PKGS)

test-root: ## jail and end-to-end tests: real namespaces, the built binary, OpenSSH
	$(NOCGO) $(GO) test -count=1 -p 1 -timeout 20m $(ROOT_PKGS)

test-slow: ## debootstrap a Debian image and log in to it (as root; needs debootstrap and a Debian mirror)
	$(NOCGO) $(GO) test -tags slow -count=1 -timeout 30m -run Debootstrap -v ./cmd/jailgate/

vet: ## go vet
	$(GO) vet ./...

staticcheck: ## staticcheck, pinned in go.mod
	$(GO) tool staticcheck ./...

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

tidy-check: ## fail if go mod tidy would change go.mod or go.sum
	@cp go.mod /tmp/jailgate-go.mod && cp go.sum /tmp/jailgate-go.sum && $(GO) mod tidy && \
	  if ! cmp -s go.mod /tmp/jailgate-go.mod || ! cmp -s go.sum /tmp/jailgate-go.sum; then \
	    echo "go mod tidy changed go.mod/go.sum"; cp /tmp/jailgate-go.mod go.mod; cp /tmp/jailgate-go.sum go.sum; exit 1; fi

lint: vet staticcheck fmt-check ## vet, staticcheck and gofmt

fuzz: ## run each fuzz target for 30s
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./config/
	$(GO) test -run '^$$' -fuzz FuzzParseAuthorizedKeys -fuzztime 30s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzParseKRL -fuzztime 30s ./keys/
	$(GO) test -run '^$$' -fuzz FuzzPtyModes -fuzztime 30s ./gateway/

# make bench BENCH_FLAGS="-n 12 -k 20 -size 32" for a quick look; -k1000 adds 1000 sessions;
# -only network for the nat part alone (a 1 GiB transfer tenant → a fake upstream vs the host's own).
BENCH_FLAGS ?=
bench: build ## jailgate vs OpenSSH sshd+ChrootDirectory (as root; bench/results/<date>.json), then the Go micro-benchmarks
	@test -x /usr/sbin/sshd || { echo "installing openssh-server (its service is never started)"; \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server; \
	  rc=$$?; rm -f /usr/sbin/policy-rc.d; exit $$rc; }
	$(GO) run ./bench $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./gateway/ ./keys/ ./config/

clean: ## remove build output
	rm -rf bin $(INIT_BIN)
