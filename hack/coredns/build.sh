#!/usr/bin/env bash
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
cache_root="${TESSERA_CACHE:-$HOME/.cache/tessera}/coredns"

usage() {
  cat <<USAGE
usage: $(basename "$0") [--print-path] [--force]
  Builds CoreDNS (version pinned in $here/go.mod) with only the plugins
  $here/main.go imports into
  $cache_root/<version>-<hash>/coredns and prints that path.
  The build's output is in build.log and its duration in build-time, both
  beside the binary.
  --print-path  only print the binary's path, build nothing
  --force       rebuild even if the binary is there
USAGE
}

# Bump when the way the binary is built changes (flags, layout), so that
# caches made by an older recipe are not reused.
RECIPE=1

die() { echo "coredns build: $*" >&2; exit 1; }

print_only=0 force=0
for arg in "$@"; do
  case "$arg" in
    --print-path) print_only=1 ;;
    --force) force=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

# Never let go fetch a newer toolchain: the machine's Go is what we build with.
export GOTOOLCHAIN=local

coredns_version=$(grep -oE 'github\.com/coredns/coredns v[0-9][^[:space:]]*' "$here/go.mod" | head -1 | cut -d' ' -f2)
[ -n "$coredns_version" ] || die "cannot find the github.com/coredns/coredns version in $here/go.mod"
go_needed=$(sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$here/go.mod")
[ -n "$go_needed" ] || die "cannot find the go directive in $here/go.mod"

command -v go >/dev/null || die "go is not installed; install Go >= $go_needed (use the machine's Go, not an older distro package)"
go_have=$(go env GOVERSION) || die "'go env GOVERSION' failed; is go >= $go_needed installed?"
go_have_num=$(echo "$go_have" | sed -E 's/^go([0-9]+(\.[0-9]+)*).*/\1/')
# Go versions compare like dotted numbers (1.24.0 < 1.26.8); sort -V does that.
if [ "$(printf '%s\n%s\n' "$go_needed" "$go_have_num" | sort -V | head -1)" != "$go_needed" ]; then
  die "Go $go_have is too old: CoreDNS $coredns_version (go.mod) needs go >= $go_needed"
fi

pin_hash() {
  {
    cat "$here/go.mod" "$here/go.sum" "$here/main.go"
    echo "recipe=$RECIPE"
    echo "$go_have"
  } | sha256sum | cut -c1-12
}

dir="$cache_root/${coredns_version}-$(pin_hash)"
bin="$dir/coredns"
if [ "$print_only" = 1 ]; then echo "$bin"; exit 0; fi

if [ -x "$bin" ] && [ "$force" = 0 ]; then echo "$bin"; exit 0; fi

command -v flock >/dev/null || die "flock is not installed (Debian: apt-get install util-linux)"

# One build at a time per folder (two concurrent callers on a cold machine).
mkdir -p "$dir"
exec 8>"$dir/.build.lock"
if ! flock -n 8; then
  echo "coredns build: another build of $bin is running; waiting for it" >&2
  flock 8
  # The build we waited for produced the binary; --force asked for a rebuild
  # relative to what was there when we started, which that build was.
  if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
fi
if [ -x "$bin" ] && [ "$force" = 0 ]; then echo "$bin"; exit 0; fi

tmp="$dir/coredns.partial"
rm -f "$tmp"
log="$dir/build.log"
: > "$log"
start=$(date +%s)
echo "coredns build: building CoreDNS $coredns_version into $bin (log: $log); a cold build takes a few minutes on 2 cores" >&2

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

run() {
  echo "+ $*" >>"$log"
  if ! nice -n 10 "$@" >>"$log" 2>&1; then
    echo "---- last lines of $log ----" >&2
    tail -40 "$log" >&2
    die "failed: $* (full log: $log)"
  fi
}

(cd "$here" && run go build -trimpath -ldflags "-s -w" -o "$tmp" .)
[ -x "$tmp" ] || die "build finished but $tmp is missing"

# Guard the point of this build: no plugin that sends queries off the machine.
plugins=$("$tmp" -plugins 2>>"$log") || { rm -f "$tmp"; die "the built binary failed to run ($tmp -plugins; log: $log)"; }
echo "$plugins" >>"$log"
for p in forward grpc etcd route53 azure clouddns nomad secondary; do
  if echo "$plugins" | grep -qx "dns\.$p\|$p"; then
    rm -f "$tmp"
    die "the built binary has the '$p' plugin, which sends queries off the machine; main.go must not import it"
  fi
done

mv -f "$tmp" "$bin"
secs=$(( $(date +%s) - start ))
echo "built in ${secs}s" >"$dir/build-time"
echo "coredns build: done in ${secs}s" >&2
echo "$bin"
