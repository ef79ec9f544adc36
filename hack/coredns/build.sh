#!/usr/bin/env bash
# shellcheck disable=SC2034  # NAME, MODULE, RECIPE, PINNED and HINT are read by hack/lib/gobuild.sh
# Builds a trimmed CoreDNS (the plugins main.go imports; no forward) from the Go
# module proxy with the machine's Go toolchain, into a versioned cache folder
# outside the repo:
#   ${TESSERA_CACHE:-$HOME/.cache/tessera}/coredns/<coredns-version>-<pin hash>/coredns
# A build happens only when that binary is missing, i.e. on a fresh machine or
# after a pin (go.mod, go.sum, main.go, the recipe below or the Go version)
# changed. Prints the binary's path on stdout; progress goes to stderr.
set -euo pipefail

# CoreDNS itself is pinned in go.mod next to this script.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME=coredns
MODULE=github.com/coredns/coredns
# Bump when the way the binary is built changes (flags, layout), so that
# caches made by an older recipe are not reused.
RECIPE=1
PINNED=(go.mod go.sum main.go)
HINT="a cold build takes a few minutes on 2 cores"
# shellcheck source-path=SCRIPTDIR source=../lib/gobuild.sh
. "$here/../lib/gobuild.sh"

gobuild_build() {
  (cd "$here" && run go build -trimpath -ldflags "-s -w" -o "$1" .)
}

# Guard the point of this build: no plugin that sends queries off the machine.
gobuild_check() {
  local plugins p
  plugins=$("$1" -plugins 2>>"$2") || { echo "coredns build: the built binary failed to run ($1 -plugins)" >&2; return 1; }
  echo "$plugins" >>"$2"
  for p in forward grpc etcd route53 azure clouddns nomad secondary; do
    if echo "$plugins" | grep -qx "dns\.$p\|$p"; then
      echo "coredns build: the built binary has the '$p' plugin, which sends queries off the machine; main.go must not import it" >&2
      return 1
    fi
  done
}

gobuild_main "$@"
