# Tessera: the two commands users need are `make demo` and `make test`.
# Builds and downloads are cached outside the repository so that a fresh
# clone on a warm machine rebuilds nothing.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

export TESSERA_CACHE ?= $(HOME)/.cache/tessera
export CARGO_TARGET_DIR ?= $(TESSERA_CACHE)/target
CARGO ?= cargo

.PHONY: help test lint fmt-check clippy crds crds-check unit demo engines bench-adapter

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

TEST_LOG := $(TESSERA_CACHE)/test-results.log

test: engines lint crds-check unit ## Install what the tests need and run every test
	@hack/test-summary.sh "$(TEST_LOG)"

lint: fmt-check clippy ## Formatting and clippy gates

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

engines: ## Install the real engines the tests run against (apt, Maven)
	@hack/install-test-deps.sh

unit: engines ## cargo test for the whole workspace
	@mkdir -p "$(TESSERA_CACHE)" && : > "$(TEST_LOG)"
	$(CARGO) test --workspace --locked 2>&1 | tee -a "$(TEST_LOG)"

crds: ## Regenerate crds/ from the Rust types
	$(CARGO) run --quiet --locked -p tessera-operator -- crd --out-dir crds

crds-check: ## Fail when crds/ differs from what the code generates
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CARGO) run --quiet --locked -p tessera-operator -- crd --out-dir "$$tmp"; \
	if ! diff -ru crds "$$tmp"; then \
	  echo "crds/ is out of date with the Rust types: run 'make crds' and commit the result." >&2; exit 1; \
	fi

demo: ## Run the demo
	@echo "make demo needs the local control plane (issue 3), which has not landed yet." >&2; exit 1

bench-adapter: ## RSS and scrape latency: tessera-adapter vs redis_exporter (docs/benchmarks.md)
	bench/adapter-vs-redis-exporter.sh
