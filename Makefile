# Tessera: the two commands users need are `make demo` and `make test`.
# Builds and downloads are cached outside the repository so that a fresh
# clone on a warm machine rebuilds nothing.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

export TESSERA_CACHE ?= $(HOME)/.cache/tessera
export CARGO_TARGET_DIR ?= $(TESSERA_CACHE)/target
CARGO ?= cargo

.PHONY: help test test-steps prebuild lint fmt-check clippy crds crds-check unit e2e controlplane-up controlplane-down demo engines images bench-adapter bench-ambassador

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

TEST_LOG := $(TESSERA_CACHE)/test-results.log

# CI machines do not keep the control plane: stop it however the run ends.
# `down` fails when it leaves a process, interface, route, rule or mount
# behind, and that fails the run.
test: ## Install what the tests need and run every test
	@status=0; $(MAKE) --no-print-directory test-steps || status=$$?; \
	hack/prebuild.sh stop; \
	if [ -n "$${CI:-}" ]; then hack/controlplane.sh down || { [ $$status -ne 0 ] || status=1; }; fi; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	hack/test-summary.sh "$(TEST_LOG)"

# prebuild: the control plane and engine images build in the background
# while lint and unit run (hack/prebuild.sh); images and controlplane-up
# wait for their own job.
test-steps: engines prebuild lint crds-check unit e2e e2e-operator

prebuild: engines
	@hack/prebuild.sh start

lint: fmt-check clippy ## Formatting and clippy gates (the fuzz crate included)

fmt-check:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

# The fuzz crate is outside the workspace (cargo-fuzz builds it with its
# own flags); checking it here keeps API changes from breaking the targets.
clippy:
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --bins --locked -- -D warnings

engines: ## Install the real engines the tests run against (apt, Maven)
	@hack/install-test-deps.sh

unit: engines ## cargo test for the workspace, without the end-to-end suite
	@mkdir -p "$(TESSERA_CACHE)" && : > "$(TEST_LOG)"
	$(CARGO) test --workspace --exclude tessera-e2e --locked 2>&1 | tee -a "$(TEST_LOG)"

# The end-to-end suite runs against the local control plane, built from source
# on first use (about 20 minutes on 2 cores; see docs/development.md). Against
# another cluster instead: KUBECONFIG=... cargo test -p tessera-e2e
#
# Built together with the operator's e2e feature, so that the dependencies
# get the features the unit step already compiled them with: `-p tessera-e2e`
# alone unifies fewer features and recompiles about 60 crates (kube, hyper...).
E2E_TESTS := $(patsubst tests/e2e/tests/%.rs,--test %,$(wildcard tests/e2e/tests/*.rs))
e2e: controlplane-up ## End-to-end tests against a real API server
	@mkdir -p "$(TESSERA_CACHE)"
	eval "$$(hack/controlplane.sh env)"; \
	$(CARGO) test --locked -p tessera-e2e -p tessera-operator --features tessera-operator/e2e $(E2E_TESTS) 2>&1 | tee -a "$(TEST_LOG)"

controlplane-up: images ## Build (if needed) and start the local control plane and its real node
	@hack/prebuild.sh wait controlplane
	hack/controlplane.sh up

# The real node cannot pull: its images are built here and imported into its
# containerd. A node that already runs gets the rebuilt ones at once.
images: ## Build the node's images (engines from Debian, Tessera from the Dockerfile)
	@hack/prebuild.sh wait images
	hack/images.sh build
	@if hack/controlplane.sh status >/dev/null 2>&1; then \
	  eval "$$(hack/controlplane.sh env)"; hack/images.sh load; \
	fi

controlplane-down: ## Stop the local control plane
	hack/controlplane.sh down

# Every binary is built, as `make images` builds them: `cargo run -p
# tessera-operator` would unify fewer features and compile about 40
# dependencies a second time on a cold machine.
OPERATOR := $(CARGO_TARGET_DIR)/debug/tessera-operator
crds: ## Regenerate crds/ from the Rust types
	$(CARGO) build --quiet --locked --bins
	$(OPERATOR) crd --out-dir crds

crds-check: ## Fail when crds/ differs from what the code generates
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CARGO) build --quiet --locked --bins; \
	$(OPERATOR) crd --out-dir "$$tmp"; \
	if ! diff -ru crds "$$tmp"; then \
	  echo "crds/ is out of date with the Rust types: run 'make crds' and commit the result." >&2; exit 1; \
	fi

demo: controlplane-up ## Control plane, CRDs, operator and the Ensemble examples, until Ready
	hack/demo.sh

# ---- operator (issue 4) ----------------------------------------------------
.PHONY: e2e-operator bench-operator bench-injection bench-shardedstore

e2e-operator: controlplane-up ## Operator end-to-end tests against the local control plane
	@hack/prebuild.sh wait prometheus
	eval "$$(hack/controlplane.sh env)"; \
	$(CARGO) test --locked -p tessera-operator --features e2e --test e2e_ensemble --test e2e_real_node --test e2e_lifecycle --test e2e_shardedstore --test e2e_broker --test e2e_hardening --test e2e_helm --test e2e_injection -- --test-threads=2 2>&1 | tee -a "$(TEST_LOG)"

bench-shardedstore: controlplane-up ## ShardedStore: ambassador vs direct throughput, and writes lost in a failover, on the real node
	eval "$$(hack/controlplane.sh env)"; \
	$(CARGO) test --locked -p tessera-operator --features e2e --test e2e_shardedstore bench_ -- --ignored --nocapture --test-threads=1

bench-operator: controlplane-up ## 200 Ensembles: time to Ready, peak RSS, API requests per reconcile
	eval "$$(hack/controlplane.sh env)"; \
	$(CARGO) test --locked --release -p tessera-operator --features e2e --test bench_ensembles -- --ignored --nocapture

bench-injection: controlplane-up ## Injection webhook: admission latency p50/p99 over 500 pod creates
	eval "$$(hack/controlplane.sh env)"; \
	$(CARGO) test --locked --release -p tessera-operator --features e2e --test e2e_injection -- --ignored --nocapture admission_latency

bench-adapter: ## RSS and scrape latency: tessera-adapter vs redis_exporter (docs/benchmarks.md)
	bench/adapter-vs-redis-exporter.sh

bench-ambassador: ## tessera-ambassador vs nutcracker vs direct Redis (prints ratios)
	bench/ambassador-vs-twemproxy.sh

# ---- fuzzing (not part of `make test`) -------------------------------------
.PHONY: fuzz

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= resp_request resp_reply shard_replies memcached_request memcached_response redis_plan memcached_plan

# Each target in turn, niced, bounded in time and memory. Needs cargo-fuzz
# (`cargo install cargo-fuzz --locked`) and a nightly toolchain. Corpora and
# crash artifacts stay in fuzz/corpus and fuzz/artifacts (git-ignored).
fuzz: ## Run each cargo-fuzz target for FUZZ_SECONDS (default 60)
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  CARGO_TARGET_DIR="$(TESSERA_CACHE)/target-fuzz" nice -n 15 \
	    $(CARGO) +nightly fuzz run --fuzz-dir fuzz $$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit $$?; \
	done
