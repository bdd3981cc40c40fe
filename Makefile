# Every target is a one-liner over a script in hack/. `make help` lists them.
NODES ?= 3
SHELL := /bin/bash

.PHONY: help deps build up down status test unit e2e fuzz bench bench-migrate bench-balance lint soak man

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

deps: ## install what ssi needs on this machine (Debian: iproute2, CRIU >= 4.2 built from source, Go modules)
	hack/install-deps.sh

build: ## build bin/ssi and bin/ssi-shim
	hack/build.sh

up: deps build ## start a local cluster of NODES (default 3) network-namespace nodes; harmless if up
	bin/ssi local up --nodes $(NODES)

down: ## stop the local cluster and remove everything it made
	hack/down.sh

status: ## say whether the local cluster is up
	bin/ssi local status

test: deps build ## gofmt and vet, then all tests (unit, e2e as root, failpoint package, fuzz); lists skipped tests
	hack/test.sh

unit: build ## run the tests that need neither root nor a cluster
	go test -count=1 ./api/... ./joblog/... ./placement/... ./cmd/...

e2e: build ## run the multi-node end-to-end tests only (as root)
	go test -count=1 -v -timeout 20m ./e2e/

fuzz: ## run every fuzz target (decoders of untrusted input) for FUZZTIME (default 10s) each
	hack/fuzz.sh

bench: deps build ## cluster-core benchmarks: run latency, spawn throughput, ps -A (docs/BENCHMARKS.md)
	go run ./hack/bench

bench-migrate: deps build ## migration vs raw CRIU at 64 MiB, 512 MiB, 2 GiB (docs/BENCHMARKS-migration.md)
	go run ./hack/benchmigrate

bench-balance: deps build ## balancer: makespan of 8 CPU-bound jobs on node1, balancer off vs on, 2 one-CPU nodes (docs/BENCHMARKS.md)
	go run ./hack/benchbalance

soak: deps build ## real-workload soak suite (as root, ~15 min): real programs moved by ssi migrate and the balancer (docs/ROBUSTNESS.md)
	hack/soak.sh

lint: ## gofmt and go vet
	hack/lint.sh

man: ## generate man pages from the CLI's help into bin/man (MANDIR=... elsewhere)
	hack/man.sh
