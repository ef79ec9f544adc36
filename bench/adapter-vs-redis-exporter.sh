#!/usr/bin/env bash
# Benchmark: tessera-adapter vs oliver006/redis_exporter against the same
# Redis, in one run. Prints RSS (current and peak) of both processes and the
# scrape latency p50/p99 over N scrapes each (default 500), interleaved so
# that both see the same Redis state. Everything runs on 127.0.0.1.
#
#   bench/adapter-vs-redis-exporter.sh            # or: make bench-adapter
#   SCRAPES=1000 KEYS=10000 bench/adapter-vs-redis-exporter.sh
set -euo pipefail

REDIS_EXPORTER_VERSION=${REDIS_EXPORTER_VERSION:-v1.88.0}
SCRAPES=${SCRAPES:-500}
KEYS=${KEYS:-1000}
CACHE=${TESSERA_CACHE:-$HOME/.cache/tessera}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$CACHE/bench
EXPORTER=$BENCH/bin/redis_exporter-$REDIS_EXPORTER_VERSION

log() { echo "== $*" >&2; }

build_exporter() {
  [[ -x $EXPORTER ]] && return
  log "building redis_exporter $REDIS_EXPORTER_VERSION from its Go module"
  export GOPATH=$BENCH/gopath GOFLAGS=-modcacherw
  mkdir -p "$BENCH/bin"
  # `go install module@version` also looks up the module's deprecation in the
  # proxy's version list; where that list is unavailable it fails with
  # "loading deprecation ... @v/list: 403". Building the main package from a
  # throwaway module that requires the same version needs only the version.
  if GOBIN=$BENCH/gobin go install "github.com/oliver006/redis_exporter@$REDIS_EXPORTER_VERSION" 2>"$BENCH/go-install.log"; then
    mv "$BENCH/gobin/redis_exporter" "$EXPORTER"
    return
  fi
  log "go install failed ($(grep -m1 -o 'loading deprecation.*' "$BENCH/go-install.log" || tail -1 "$BENCH/go-install.log")); building via a wrapper module"
  local wrap; wrap=$(mktemp -d)
  (
    cd "$wrap"
    go mod init tessera.dev/bench-wrap >/dev/null 2>&1
    go mod edit -require="github.com/oliver006/redis_exporter@$REDIS_EXPORTER_VERSION"
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/oliver006/redis_exporter"\n' > tools.go
    go mod tidy >/dev/null 2>&1
    go build -o "$EXPORTER" github.com/oliver006/redis_exporter
  )
  rm -rf "$wrap"
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

build_exporter
log "building tessera-adapter (release)"
(cd "$ROOT" && cargo build --quiet --release --locked -p tessera-adapter)
ADAPTER=$CARGO_TARGET_DIR/release/tessera-adapter

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

RPORT=$(free_port); APORT=$(free_port); EPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$WORK" --save '' --appendonly no \
  --logfile "$WORK/redis.log" --maxmemory 256mb &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
log "loading $KEYS keys into redis on :$RPORT"
for i in $(seq 1 "$KEYS"); do printf 'SET bench:key:%d value-%d\r\n' "$i" "$i"; done | redis-cli -p "$RPORT" --pipe >/dev/null

"$ADAPTER" --engine redis --target "127.0.0.1:$RPORT" --listen "127.0.0.1:$APORT" --log-level warn \
  2>"$WORK/adapter.log" &
APID=$!; PIDS+=($APID)
"$EXPORTER" --redis.addr="redis://127.0.0.1:$RPORT" --web.listen-address="127.0.0.1:$EPORT" \
  >"$WORK/exporter.log" 2>&1 &
EPID=$!; PIDS+=($EPID)

python3 - "$APORT" "$EPORT" "$APID" "$EPID" "$SCRAPES" "$REDIS_EXPORTER_VERSION" <<'PY'
import http.client, sys, time

aport, eport, apid, epid, n, ver = sys.argv[1:]
n = int(n)

def conn(port):
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
            c.request("GET", "/metrics"); r = c.getresponse(); r.read()
            if r.status == 200:
                return c
        except OSError:
            time.sleep(0.1)
    sys.exit(f"no /metrics on :{port}")

def scrape(c):
    # Keep-alive, as Prometheus does.
    t = time.perf_counter()
    c.request("GET", "/metrics"); r = c.getresponse(); body = r.read()
    dt = time.perf_counter() - t
    assert r.status == 200, r.status
    return dt, body

def rss(pid):
    f = {l.split(":")[0]: l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith(("VmRSS", "VmHWM"))}
    return int(f["VmRSS"]) / 1024, int(f["VmHWM"]) / 1024

def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

a, e = conn(aport), conn(eport)
for _ in range(20):  # warm-up
    scrape(a); scrape(e)
la, le = [], []
for _ in range(n):   # interleaved: same Redis state for both
    dt, ab = scrape(a); la.append(dt)
    dt, eb = scrape(e); le.append(dt)
assert b"tessera_up{engine=\"redis\"} 1" in ab, "adapter does not see redis"
assert b"redis_up 1" in eb, "redis_exporter does not see redis"
ra, re_ = rss(apid), rss(epid)
print(f"{'':24}{'RSS MiB':>9}{'peak MiB':>10}{'p50 ms':>9}{'p99 ms':>9}{'series':>8}")
for name, r, l, b in (("tessera-adapter", ra, la, ab), (f"redis_exporter {ver}", re_, le, eb)):
    series = sum(1 for line in b.splitlines() if line and not line.startswith(b"#"))
    print(f"{name:24}{r[0]:9.1f}{r[1]:10.1f}{pct(l,50)*1e3:9.2f}{pct(l,99)*1e3:9.2f}{series:8}")
print(f"scrapes each: {n}; RSS ratio adapter/exporter: {ra[0]/re_[0]:.2f}; p50 ratio: {pct(la,50)/pct(le,50):.2f}")
ok = ra[0] <= re_[0] / 2 and pct(la, 50) <= pct(le, 50)
print("targets (RSS <= 1/2, p50 no slower):", "met" if ok else "NOT met")
PY
