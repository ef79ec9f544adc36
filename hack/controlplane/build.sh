#!/usr/bin/env bash
# Builds the local control plane binaries from the Go module proxy with the
# machine's Go toolchain, into a versioned cache folder outside the repo:
#   ${TESSERA_CACHE:-$HOME/.cache/tessera}/controlplane/<k8s-version>-<pin hash>/bin
# A build happens only when that folder lacks a complete set of binaries, i.e.
# on a fresh machine or after a pin (go.mod, go.sum, the versions below or this
# script) changed. Prints the bin folder on stdout; progress goes to stderr.
set -euo pipefail

# ---- pins -----------------------------------------------------------------
# k8s.io/kubernetes and etcd are pinned in go.mod next to this script.
K8S_VERSION=v1.34.4
KWOK_VERSION=v0.8.0   # go.mod needs go 1.26.0
HELM_VERSION=v3.22.0  # go.mod needs go 1.26.0
# ---------------------------------------------------------------------------

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${TESSERA_CACHE:-$HOME/.cache/tessera}/controlplane"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok helm)

usage() {
  cat <<USAGE
usage: $(basename "$0") [--print-dir] [--force]
  The kwok stages file is written next to the bin folder (../kwok-stages.yaml).
  Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
  and the real node's kubelet and kube-proxy ($K8S_VERSION), kwok
  ($KWOK_VERSION) and helm ($HELM_VERSION) into
  $cache_root/<version>-<hash>/bin and prints that folder.
  --print-dir  only print the folder, build nothing
  --force      rebuild even if the binaries are there
USAGE
}

# Bump when the way the binaries are built changes (flags, layout), so that
# caches made by an older recipe are not reused.
RECIPE=2

pin_hash() {
  {
    cat "$here/go.mod" "$here/go.sum"
    echo "$K8S_VERSION $KWOK_VERSION $HELM_VERSION recipe=$RECIPE"
    go env GOVERSION
  } | sha256sum | cut -c1-12
}

# kwok ships no built-in Stages (kwokctl adds them). Assemble kwok's own "fast"
# node and pod stages plus node heartbeat-with-lease from the kwok module source
# in the Go module cache; they are not committed to this repo.
write_kwok_stages() {
  local src
  src=$(cd "$dir" && GOFLAGS= go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$src" ] && [ -d "$src/kustomize/stage" ] || die "cannot find the kwok $KWOK_VERSION module source for its stages"
  local out="$dir/kwok-stages.yaml.partial" f
  : >"$out"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [ -f "$src/kustomize/stage/$f" ] || die "kwok stage $f missing in $src"
    { echo "---"; cat "$src/kustomize/stage/$f"; } >>"$out"
  done
  mv "$out" "$dir/kwok-stages.yaml"
}

die() { echo "controlplane build: $*" >&2; exit 1; }

print_only=0 force=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_only=1 ;;
    --force) force=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

command -v go >/dev/null || die "go is not installed; install Go >= 1.26 (Debian: apt-get install golang-go is too old; use the machine's Go)"
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$go_minor" -ge 26 ] || die "Go $(go env GOVERSION) is too old: kwok $KWOK_VERSION and helm $HELM_VERSION need go1.26"

dir="$cache_root/${K8S_VERSION}-$(pin_hash)"
bin="$dir/bin"
if [ "$print_only" = 1 ]; then echo "$bin"; exit 0; fi

complete=1
for b in "${BINARIES[@]}"; do [ -x "$bin/$b" ] || complete=0; done
if [ "$complete" = 1 ] && [ "$force" = 0 ]; then
  [ -f "$dir/kwok-stages.yaml" ] || write_kwok_stages
  echo "$bin"; exit 0
fi

# One build at a time per folder (two concurrent 'up's on a cold machine).
mkdir -p "$dir"
exec 8>"$dir/.build.lock"
if ! flock -n 8; then
  echo "controlplane build: another build of $bin is running; waiting for it" >&2
  flock 8
fi
complete=1
for b in "${BINARIES[@]}"; do [ -x "$bin/$b" ] || complete=0; done
if [ "$complete" = 1 ] && [ "$force" = 0 ]; then
  [ -f "$dir/kwok-stages.yaml" ] || write_kwok_stages
  echo "$bin"; exit 0
fi
tmp="$dir/bin.partial"
rm -rf "$tmp"; mkdir -p "$tmp"
log="$dir/build.log"
: > "$log"
start=$(date +%s)
echo "controlplane build: building into $bin (log: $log); a cold build takes a long while on 2 cores" >&2

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local
major=${K8S_VERSION#v}; major=${major%%.*}
minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
vflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  vflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  vflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

run() {
  echo "+ $*" >>"$log"
  if ! nice -n 10 "$@" >>"$log" 2>&1; then
    tail -40 "$log" >&2
    die "failed: $* (full log: $log)"
  fi
}

# Kubernetes components and etcd, from the wrapper module.
(cd "$here" && run go build -trimpath -ldflags "-s -w $vflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy)
(cd "$here" && run go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)

# kwok and helm have no replace directives, so `go install pkg@tag` works.
# Run outside any module so the wrapper's go.mod does not interfere.
(cd "$tmp" && GOBIN="$tmp" run go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
(cd "$tmp" && GOBIN="$tmp" run go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")

for b in "${BINARIES[@]}"; do [ -x "$tmp/$b" ] || die "build finished but $b is missing in $tmp"; done
write_kwok_stages
rm -rf "$bin"; mv "$tmp" "$bin"
secs=$(( $(date +%s) - start ))
echo "built in ${secs}s" >"$dir/build-time"
echo "controlplane build: done in ${secs}s" >&2
echo "$bin"
