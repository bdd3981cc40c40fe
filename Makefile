# Every target is a one-liner over a script in hack/. `make help` lists them.
NODES ?= 3
# HA=1: node1..node3 each hold a member of a 3-member etcd (survives the loss of any one).
HA ?= 0
ETCD_MEMBERS := $(if $(filter 1,$(HA)),3,1)
SHELL := /bin/bash

.PHONY: help deps build up down status test unit e2e fuzz bench bench-migrate bench-balance bench-ha bench-hollow bench-failover lint soak soak-failover man

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

deps: ## install what ssi needs on this machine (Debian: iproute2, CRIU >= 4.2 built from source, Go modules)
	hack/install-deps.sh

build: ## build bin/ssi and bin/ssi-shim
	hack/build.sh

up: deps build ## start a local cluster of NODES (default 3) network-namespace nodes (HA=1: a 3-member etcd on node1..node3); harmless if up
	bin/ssi local up --nodes $(NODES) --etcd-members $(ETCD_MEMBERS)

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

bench-ha: deps build ## HA control plane: the pause a client sees when the etcd leader's agent dies, 3 members (docs/BENCHMARKS.md)
	go run ./hack/benchha

bench-hollow: deps build ## control plane with 10 to 1,000 hollow nodes beside 3 real ones: ssi run, dead-node detection, balancer round and CPU, etcd (docs/BENCHMARKS-scale.md)
	go run ./hack/benchhollow -svg /tmp/bench-hollow.svg -json /tmp/bench-hollow.json

bench-failover: deps build ## failover from checkpoints: node kill of a 64 and a 512 MiB job, partition, 3-replica service (docs/BENCHMARKS.md)
	go run ./hack/benchfailover

soak: deps build ## real-workload soak suite (as root, ~15 min): real programs moved by ssi migrate and the balancer (docs/ROBUSTNESS.md)
	hack/soak.sh

soak-failover: deps build ## failover fault campaign (as root, ~15 min): 54 node/agent kills and partitions, lost and duplicated processes counted (docs/ROBUSTNESS.md)
	hack/soak-failover.sh

lint: ## gofmt and go vet
	hack/lint.sh

man: ## generate man pages from the CLI's help into bin/man (MANDIR=... elsewhere)
	hack/man.sh
