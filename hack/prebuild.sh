#!/usr/bin/env bash
# Starts the slow, cold-only builds of `make test` in the background, so that
# they overlap the lint and unit steps instead of following them:
#   - the control plane's Go binaries, then CoreDNS (hack/controlplane/build.sh,
#     hack/coredns/build.sh): about 19 minutes of compiling on a cold machine;
#   - the engine images from Debian packages (hack/images.sh build): mostly
#     downloads and unpacking, about 6 minutes;
#   - Prometheus with Kubernetes service discovery (hack/prometheus/build.sh),
#     which only the Helm end-to-end test needs: about 5 minutes of compiling.
# The unit step spends most of its time waiting on real engines, and both
# builds wait on downloads, so on 2 cores the overlap saves about a quarter
# of a cold run (docs/development.md). The builds run at low priority (nice,
# idle I/O class) so that the foreground steps keep the CPU they need.
#
# Each build script takes its own lock, so a foreground `hack/images.sh build`
# or `hack/controlplane.sh up` started while a background build runs waits
# for it instead of building twice. `wait` is still called before them, to
# report a background failure with its log rather than retry it silently.
# When everything is already built, each background job returns in seconds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
state=${TESSERA_CACHE:-$HOME/.cache/tessera}/prebuild
# The Tessera image is not prebuilt: it needs the workspace's binaries, which
# the foreground cargo steps build anyway.
IMAGES=(base pause redis memcached zookeeper etcd kafka)
JOBS=(controlplane images prometheus)

usage() {
  cat <<EOF
Usage: hack/prebuild.sh start|wait [JOB...]|stop|status

Runs the cold builds of \`make test\` in the background (low priority), so
that they overlap the lint and unit steps.

Commands:
  start   start the background builds, unless they already run
  wait    wait until the named jobs (default: all) end; fail, with the end
          of its log, if one failed
  stop    stop the background builds that still run
  status  say which builds run, succeeded or failed

Jobs and logs (under $state/):
  controlplane  hack/controlplane/build.sh, then hack/coredns/build.sh
  images        hack/images.sh build ${IMAGES[*]}
  prometheus    hack/prometheus/build.sh

Environment:
  TESSERA_CACHE   cache root (default \$HOME/.cache/tessera)
EOF
}

log() { echo "prebuild: $*" >&2; }

# Runs one job in the foreground and records its exit status in a file: the
# job is not the caller's child, so `wait` cannot get it any other way.
run_job() {
  local job=$1 rc=0
  case $job in
    controlplane) { "$here/controlplane/build.sh" >/dev/null && "$here/coredns/build.sh" >/dev/null; } || rc=$? ;;
    images) "$here/images.sh" build "${IMAGES[@]}" || rc=$? ;;
    prometheus) "$here/prometheus/build.sh" >/dev/null || rc=$? ;;
  esac
  echo "$rc" >"$state/$job.rc.partial" && mv "$state/$job.rc.partial" "$state/$job.rc"
}

running() {
  local pid
  [ -f "$state/$1.pid" ] || return 1
  pid=$(cat "$state/$1.pid")
  kill -0 "$pid" 2>/dev/null
}

cmd_start() {
  mkdir -p "$state"
  local job
  for job in "${JOBS[@]}"; do
    if running "$job"; then
      log "$job: already running (log: $state/$job.log)"
      continue
    fi
    rm -f "$state/$job.rc"
    # setsid: a process group of its own, which `stop` ends as a whole.
    setsid nice -n 10 ionice -c 3 "$self" __run "$job" >"$state/$job.log" 2>&1 </dev/null &
    echo $! >"$state/$job.pid"
    log "$job: started in the background (log: $state/$job.log)"
  done
}

# Waits for one job; returns its exit status, or 0 if it was never started.
wait_job() {
  local job=$1 waited=0
  [ -f "$state/$job.pid" ] || return 0
  while running "$job" && [ ! -f "$state/$job.rc" ]; do
    [ $waited = 1 ] || log "$job: waiting for the background build (log: $state/$job.log)"
    waited=1
    sleep 2
  done
  local rc
  rc=$(cat "$state/$job.rc" 2>/dev/null || echo "none")
  case $rc in
    0) return 0 ;;
    none)
      log "$job: the background build ended without an exit status (killed?); log: $state/$job.log"
      return 1 ;;
    *)
      log "$job: the background build failed (exit $rc); the end of $state/$job.log:"
      tail -30 "$state/$job.log" >&2
      return "$rc" ;;
  esac
}

cmd_wait() {
  local job status=0 jobs=("$@")
  [ ${#jobs[@]} -gt 0 ] || jobs=("${JOBS[@]}")
  for job in "${jobs[@]}"; do
    [[ " ${JOBS[*]} " == *" $job "* ]] || { log "no such job: $job (jobs: ${JOBS[*]})"; return 2; }
    wait_job "$job" || status=1
    # Reported once: the next `make` builds in the foreground, with its output.
    rm -f "$state/$job.pid" "$state/$job.rc"
  done
  return $status
}

cmd_stop() {
  local job pid
  for job in "${JOBS[@]}"; do
    if running "$job"; then
      pid=$(cat "$state/$job.pid")
      log "$job: stopping the background build"
      kill -TERM -- "-$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do running "$job" || break; sleep 0.5; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$state/$job.pid" "$state/$job.rc"
  done
}

cmd_status() {
  local job
  for job in "${JOBS[@]}"; do
    if [ -f "$state/$job.rc" ]; then
      echo "$job: ended, exit $(cat "$state/$job.rc")"
    elif running "$job"; then
      echo "$job: running (log: $state/$job.log)"
    else
      echo "$job: not running"
    fi
  done
}

case ${1:-} in
  start) cmd_start ;;
  wait) shift; cmd_wait "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  __run) run_job "$2" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
