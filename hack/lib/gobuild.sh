# shellcheck shell=bash disable=SC2154  # $here and the settings come from the caller
# Shared by the scripts that build one binary from the Go module proxy into a
# versioned cache folder outside the repo (hack/coredns/build.sh,
# hack/prometheus/build.sh). Sourced, not run. The caller sets, before
# calling gobuild_main:
#   NAME      the binary's name (also the cache folder's)
#   MODULE    the module path whose version is pinned in $here/go.mod
#   RECIPE    bumped when the way the binary is built changes
#   PINNED    the files whose content pins the build (go.mod, go.sum, ...)
#   HINT      what a cold build costs, for the progress message
# and defines gobuild_build OUT LOG (build the binary at OUT; log to LOG,
# through `run`) and optionally gobuild_check BIN LOG (vet the built binary;
# return non-zero to refuse it).
#
# Layout: ${TESSERA_CACHE:-$HOME/.cache/tessera}/$NAME/<version>-<pin hash>/$NAME.
# A build happens only when that binary is missing (a fresh machine, or a
# pin or the Go version changed). Prints the binary's path on stdout;
# progress goes to stderr.

die() { echo "$NAME build: $*" >&2; exit 1; }

gobuild_usage() {
  cat <<USAGE
usage: $(basename "$0") [--print-path] [--force]
  Builds $NAME (version pinned in $here/go.mod) into
  ${TESSERA_CACHE:-\$HOME/.cache/tessera}/$NAME/<version>-<hash>/$NAME and prints that path.
  The build's output is in build.log and its duration in build-time, both
  beside the binary.
  --print-path  only print the binary's path, build nothing
  --force       rebuild even if the binary is there
USAGE
}

# Runs a build command at low priority, its output in $log; on failure shows
# the end of the log and stops.
run() {
  echo "+ $*" >>"$log"
  if ! nice -n 10 "$@" >>"$log" 2>&1; then
    echo "---- last lines of $log ----" >&2
    tail -40 "$log" >&2
    die "failed: $* (full log: $log)"
  fi
}

gobuild_main() {
  local print_only=0 force=0 arg
  for arg in "$@"; do
    case "$arg" in
      --print-path) print_only=1 ;;
      --force) force=1 ;;
      -h|--help) gobuild_usage; exit 0 ;;
      *) gobuild_usage >&2; exit 2 ;;
    esac
  done

  # Never let go fetch a newer toolchain: the machine's Go is what we build with.
  export GOTOOLCHAIN=local

  local version go_needed go_have go_have_num
  version=$(grep -oE "${MODULE//./\\.} v[0-9][^[:space:]]*" "$here/go.mod" | head -1 | cut -d' ' -f2)
  [ -n "$version" ] || die "cannot find the $MODULE version in $here/go.mod"
  go_needed=$(sed -n 's/^go \([0-9][0-9.]*\).*/\1/p' "$here/go.mod")
  [ -n "$go_needed" ] || die "cannot find the go directive in $here/go.mod"
  command -v go >/dev/null || die "go is not installed; install Go >= $go_needed (use the machine's Go, not an older distro package)"
  go_have=$(go env GOVERSION) || die "'go env GOVERSION' failed; is go >= $go_needed installed?"
  go_have_num=$(echo "$go_have" | sed -E 's/^go([0-9]+(\.[0-9]+)*).*/\1/')
  # Go versions compare like dotted numbers (1.24.0 < 1.26.8); sort -V does that.
  if [ "$(printf '%s\n%s\n' "$go_needed" "$go_have_num" | sort -V | head -1)" != "$go_needed" ]; then
    die "Go $go_have is too old: $MODULE $version (go.mod) needs go >= $go_needed"
  fi

  local hash
  hash=$({ (cd "$here" && cat "${PINNED[@]}"); echo "recipe=$RECIPE"; echo "$go_have"; } | sha256sum | cut -c1-12)
  local dir="${TESSERA_CACHE:-$HOME/.cache/tessera}/$NAME/${version}-$hash"
  local bin="$dir/$NAME"
  if [ "$print_only" = 1 ]; then echo "$bin"; return 0; fi
  if [ -x "$bin" ] && [ "$force" = 0 ]; then echo "$bin"; return 0; fi

  command -v flock >/dev/null || die "flock is not installed (Debian: apt-get install util-linux)"
  # One build at a time per folder (two concurrent callers on a cold machine).
  mkdir -p "$dir"
  exec 8>"$dir/.build.lock"
  if ! flock -n 8; then
    echo "$NAME build: another build of $bin is running; waiting for it" >&2
    flock 8
    # The build we waited for produced the binary; --force asked for a
    # rebuild relative to what was there when we started, which that was.
    if [ -x "$bin" ]; then echo "$bin"; return 0; fi
  fi
  if [ -x "$bin" ] && [ "$force" = 0 ]; then echo "$bin"; return 0; fi

  local tmp="$dir/$NAME.partial" start secs
  rm -f "$tmp"
  log="$dir/build.log"
  : >"$log"
  start=$(date +%s)
  echo "$NAME build: building $MODULE $version into $bin (log: $log); $HINT" >&2
  export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
  gobuild_build "$tmp" "$log"
  [ -x "$tmp" ] || die "build finished but $tmp is missing"
  if declare -F gobuild_check >/dev/null && ! gobuild_check "$tmp" "$log"; then
    rm -f "$tmp"
    die "the built binary was refused (log: $log)"
  fi
  mv -f "$tmp" "$bin"
  secs=$(( $(date +%s) - start ))
  echo "built in ${secs}s" >"$dir/build-time"
  echo "$NAME build: done in ${secs}s" >&2
  echo "$bin"
}
