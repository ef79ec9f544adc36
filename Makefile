# Tessera: the two commands users need are `make demo` and `make test`.
# Builds and downloads are cached outside the repository so that a fresh
# clone on a warm machine rebuilds nothing.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

export TESSERA_CACHE ?= $(HOME)/.cache/tessera
export CARGO_TARGET_DIR ?= $(TESSERA_CACHE)/target
CARGO ?= cargo

.PHONY: help test lint fmt-check clippy crds crds-check unit demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

test: lint crds-check unit ## Install what the tests need and run every test

lint: fmt-check clippy ## Formatting and clippy gates

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: ## cargo test for the whole workspace
	$(CARGO) test --workspace --locked

crds: ## Regenerate crds/ from the Rust types
	$(CARGO) run --quiet --locked -p tessera-operator -- crd --out-dir crds

crds-check: ## Fail when crds/ differs from what the code generates
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CARGO) run --quiet --locked -p tessera-operator -- crd --out-dir "$$tmp"; \
	if ! diff -ru crds "$$tmp"; then \
	  echo "crds/ is out of date with the Rust types: run 'make crds' and commit the result." >&2; exit 1; \
	fi

demo: ## Control plane, CRDs, operator and the Ensemble examples, until Ready
	hack/demo.sh

# ---- operator (issue 4) ----------------------------------------------------
.PHONY: e2e-operator bench-operator

e2e-operator: ## Operator end-to-end tests against the local control plane
	hack/controlplane.sh up
	eval "$$(hack/controlplane.sh env)"; \
	$(CARGO) test --locked -p tessera-operator --features e2e --test e2e_ensemble -- --test-threads=2

bench-operator: ## 200 Ensembles: time to Ready, peak RSS, API requests per reconcile
	hack/controlplane.sh up
	eval "$$(hack/controlplane.sh env)"; \
	$(CARGO) test --locked --release -p tessera-operator --features e2e --test bench_ensembles -- --ignored --nocapture
