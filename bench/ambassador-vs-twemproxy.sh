#!/usr/bin/env bash
# Throughput and p50 latency of tessera-ambassador against nutcracker
# (twemproxy) and direct Redis, on this machine, in one run:
#   3 redis-server shards on 127.0.0.1, one pool file (fnv1a_64, ketama)
#   for both proxies, redis-benchmark -t set,get -n 200000 -c 50 -r 100000
#   at -P 1 and -P 16, targets measured alternately; then memcslap through
#   both proxies to 3 memcached shards. Prints the ratios.
#
# Usage: bench/ambassador-vs-twemproxy.sh [rounds]   (default 3 rounds;
# the median round is reported). AMBASSADOR_ARGS adds flags to the
# ambassador, e.g. AMBASSADOR_ARGS="--threads 2". Needs redis-server,
# redis-benchmark, memcached, nutcracker and memcslap
# (hack/install-test-deps.sh).
set -euo pipefail

ROUNDS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}
AMB=${AMBASSADOR_BIN:-$CARGO_TARGET_DIR/release/tessera-ambassador}
NUT=${NUTCRACKER_BIN:-$(command -v nutcracker || echo /usr/sbin/nutcracker)}
N=${BENCH_REQUESTS:-200000}

if [[ -z ${AMBASSADOR_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --quiet --release -p tessera-ambassador)
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

# --- Redis ---------------------------------------------------------------
SHARDS=()
for _ in 1 2 3; do
  p=$(free_port)
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  PIDS+=($!); SHARDS+=("$p"); wait_port "$p"
done
NUT_PORT=$(free_port); AMB_PORT=$(free_port)
pool() { # pool <listen port> <redis|memcached> <shard ports...>
  local port=$1 redis=$2; shift 2
  printf 'bench:\n  listen: 127.0.0.1:%s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: %s\n  timeout: 2000\n  servers:\n' "$port" "$redis"
  local i=0; for s in "$@"; do printf '   - 127.0.0.1:%s:1 shard-%s\n' "$s" "$i"; i=$((i+1)); done
}
# proxies <tag> <redis: true|false> <nutcracker port> <ambassador port> <shard ports...>:
# writes the pool for both proxies and starts them.
proxies() {
  local tag=$1 redis=$2 nut=$3 amb=$4; shift 4
  pool "$nut" "$redis" "$@" > "$WORK/nut$tag.yml"
  pool "$amb" "$redis" "$@" > "$WORK/amb$tag.yml"
  "$NUT" -c "$WORK/nut$tag.yml" -s "$(free_port)" -a 127.0.0.1 \
    -o "$WORK/nut$tag.log" -p "$WORK/nut$tag.pid" &
  PIDS+=($!); wait_port "$nut"
  # shellcheck disable=SC2086 # AMBASSADOR_ARGS is a list of flags
  TESSERA_LOG_LEVEL=warn "$AMB" --config "$WORK/amb$tag.yml" ${AMBASSADOR_ARGS:-} \
    2>"$WORK/amb$tag.log" &
  PIDS+=($!); wait_port "$amb"
}
proxies "" true "$NUT_PORT" "$AMB_PORT" "${SHARDS[@]}"

# run <port> <pipeline> -> "set_rps get_rps set_p50 get_p50"
run() {
  redis-benchmark -h 127.0.0.1 -p "$1" -t set,get -n "$N" -c 50 -r 100000 -P "$2" --csv -q 2>/dev/null |
    tr -d '"' | awk -F, 'NR>1 { rps[$1]=$2; p50[$1]=$5 }
                 END { printf "%s %s %s %s\n", rps["SET"], rps["GET"], p50["SET"], p50["GET"] }'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A R
for P in ${BENCH_PIPELINES:-1 16}; do
  for round in $(seq 1 "$ROUNDS"); do
    for target in direct nutcracker ambassador; do
      case $target in
        direct) port=${SHARDS[0]} ;;
        nutcracker) port=$NUT_PORT ;;
        ambassador) port=$AMB_PORT ;;
      esac
      read -r s g s50 g50 <<<"$(run "$port" "$P")"
      R[$target,$P,set]+="$s "; R[$target,$P,get]+="$g "
      R[$target,$P,set50]+="$s50 "; R[$target,$P,get50]+="$g50 "
      eval "last_$target=(\"$s\" \"$g\")"
      echo "round $round -P $P $target: SET $s rps (p50 $s50 ms), GET $g rps (p50 $g50 ms)" >&2
    done
    # The machine is shared: compare targets measured back to back.
    R[ratio,$P,set]+="$(awk -v a="${last_ambassador[0]}" -v n="${last_nutcracker[0]}" 'BEGIN{print a/n}') "
    R[ratio,$P,get]+="$(awk -v a="${last_ambassador[1]}" -v n="${last_nutcracker[1]}" 'BEGIN{print a/n}') "
  done
done

med() { tr ' ' '\n' <<<"${R[$1]}" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "Redis: median of $ROUNDS rounds, requests/s (p50 ms); amb/nut is the median of per-round ratios"
printf '%-6s %-4s %22s %22s %22s %10s %10s\n' P op direct nutcracker ambassador amb/nut amb/direct
for P in ${BENCH_PIPELINES:-1 16}; do
  for op in set get; do
    d=$(med "direct,$P,$op"); n=$(med "nutcracker,$P,$op"); a=$(med "ambassador,$P,$op")
    d50=$(med "direct,$P,${op}50"); n50=$(med "nutcracker,$P,${op}50"); a50=$(med "ambassador,$P,${op}50")
    printf '%-6s %-4s %22s %22s %22s %10s %10s\n' "-P $P" "$op" "$d ($d50)" "$n ($n50)" "$a ($a50)" \
      "$(printf '%.2f' "$(med "ratio,$P,$op")")x" "$(ratio "$a" "$d")x"
  done
done

# --- memcached -------------------------------------------------------------
if [[ ${BENCH_MEMCACHED:-1} == 1 ]] && command -v memcslap >/dev/null; then
  MC=()
  for _ in 1 2 3; do
    p=$(free_port)
    memcached -l 127.0.0.1 -p "$p" -U 0 -u root -m 256 &
    PIDS+=($!); MC+=("$p"); wait_port "$p"
  done
  NUT_MC=$(free_port); AMB_MC=$(free_port)
  proxies -mc false "$NUT_MC" "$AMB_MC" "${MC[@]}"
  mcrun() { # ops/s from memcslap's "Took N seconds" over a fixed count
    local start end
    start=$(date +%s.%N)
    memcslap --servers="127.0.0.1:$1" --concurrency=50 --execute-number=2000 --test=set >/dev/null 2>&1
    memcslap --servers="127.0.0.1:$1" --concurrency=50 --execute-number=2000 --test=get >/dev/null 2>&1
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", 200000 / (e - s) }'
  }
  declare -A M
  for round in $(seq 1 "$ROUNDS"); do
    for target in nutcracker ambassador; do
      port=$NUT_MC; [[ $target == ambassador ]] && port=$AMB_MC
      M[$target]+="$(mcrun "$port") "
    done
  done
  mn=$(tr ' ' '\n' <<<"${M[nutcracker]}" | grep . | median)
  ma=$(tr ' ' '\n' <<<"${M[ambassador]}" | grep . | median)
  echo
  echo "memcached (memcslap, 50 clients, 100k set + 100k get): nutcracker $mn ops/s, ambassador $ma ops/s, amb/nut $(ratio "$ma" "$mn")x"
fi
