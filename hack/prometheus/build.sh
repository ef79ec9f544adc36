#!/usr/bin/env bash
# shellcheck disable=SC2034  # NAME, MODULE, RECIPE, PINNED and HINT are read by hack/lib/gobuild.sh
# Builds Prometheus with Kubernetes service discovery (and no other) from the
# Go module proxy with the machine's Go toolchain, into a versioned cache
# folder outside the repo:
#   ${TESSERA_CACHE:-$HOME/.cache/tessera}/prometheus/<version>-<pin hash>/prometheus
# Debian's prometheus package is built without Kubernetes service discovery;
# the Helm end-to-end test needs it to discover engine pods as a real
# Prometheus in a cluster does. A build happens only when that binary is
# missing (a fresh machine, or go.mod, go.sum, the recipe below or the Go
# version changed). Prints the binary's path on stdout; progress goes to
# stderr. Promtool stays Debian's (`promtool check metrics`, `test rules`).
set -euo pipefail

# Prometheus itself is pinned in go.mod next to this script.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME=prometheus
MODULE=github.com/prometheus/prometheus
# Bump when the way the binary is built changes (flags, tags, layout), so
# that caches made by an older recipe are not reused.
RECIPE=1
PINNED=(go.mod go.sum tools.go)
HINT="a cold build takes about 6 minutes on 2 cores (10 or more under load)"
# shellcheck source-path=SCRIPTDIR source=../lib/gobuild.sh
. "$here/../lib/gobuild.sh"

gobuild_build() {
  # remove_all_sd drops every service discovery but those enabled by name:
  # Prometheus's own plugins/ files are guarded by these tags. The web UI's
  # assets are not built in (the API is all the tests use).
  (cd "$here" && run go build -trimpath -ldflags "-s -w" \
    -tags remove_all_sd,enable_kubernetes_sd -o "$1" github.com/prometheus/prometheus/cmd/prometheus)
}

gobuild_check() {
  "$1" --version >>"$2" 2>&1 || { echo "prometheus build: the built binary failed to run ($1 --version)" >&2; return 1; }
}

gobuild_main "$@"
