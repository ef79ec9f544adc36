#!/usr/bin/env bash
# A real, local Kubernetes control plane for the demo and the end-to-end tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok faking
# nodes, all on 127.0.0.1, built from source by hack/controlplane/build.sh,
# plus one real node (containerd, kubelet, kube-proxy, CoreDNS) whose pods
# actually run (hack/controlplane/node.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TESSERA_CACHE:-$HOME/.cache/tessera}"
RUN="${TESSERA_CONTROLPLANE_DIR:-$CACHE/controlplane/run}"
NODES="${TESSERA_KWOK_NODES:-3}"
UP_TIMEOUT="${TESSERA_UP_TIMEOUT:-120}"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

usage() {
  cat <<EOF
usage: hack/controlplane.sh <command>

Runs a real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver
(RBAC + Node authorization), kube-controller-manager, kube-scheduler, and kwok
faking $NODES Ready nodes, plus a default StorageClass "standard" whose claims
the controller-manager's hostPath provisioner binds once their pod is
scheduled (WaitForFirstConsumer).

It also starts one real node, "tessera-node": containerd and runc (Debian),
kubelet and kube-proxy (built with the control plane), a CNI bridge
(\$TESSERA_NODE_BRIDGE, default tessera0, on \$TESSERA_NODE_CIDR, default
10.89.0.0/24) and CoreDNS for cluster.local on the bridge address. Pods on it
get no default route and no upstream DNS, and an iptables guard drops anything
they send off the bridge. Its images come from hack/images.sh (no registry).
Pods land on the real node by default; the kwok nodes carry the taint
kwok.x-k8s.io/node=fake:NoSchedule, so only pods that tolerate it (and select
type=kwok) go there: scale benchmarks.

commands:
  up      build the binaries if needed (cold: tens of minutes), start every
          component, and return once the API answers and the nodes are Ready.
          Does nothing if the control plane is already up and healthy.
  down    stop exactly the processes that 'up' started (by pid), the node's
          containers, and remove what the node added (bridge, routes,
          iptables rules, mounts; ip_forward restored). Fails if anything
          is left behind, and names it.
  status  report each component and the node's parts; exit 0 only if all
          run and the API answers.
  env     print shell lines to eval: export KUBECONFIG=..., CONTAINERD_ADDRESS=...
          and PATH=<bin>:\$PATH (kubectl, helm, kwok, etcd and the control
          plane binaries).
  build   only build (or find) the binaries and print their folder.

environment:
  TESSERA_CACHE              cache root (default \$HOME/.cache/tessera)
  TESSERA_CONTROLPLANE_DIR   state folder (default \$TESSERA_CACHE/controlplane/run)
  TESSERA_KWOK_NODES         number of fake nodes (default 3)
  TESSERA_UP_TIMEOUT         seconds to wait for each component (default 120)
  TESSERA_NODE               1 (default): start the real node; 0: kwok nodes only
  TESSERA_NODE_CIDR          the real node's pod subnet (default 10.89.0.0/24)
  TESSERA_NODE_BRIDGE        the real node's bridge interface (default tessera0)

state folder: kubeconfig, pki/, pids/, logs/ (one log per component), ports,
node/ (containerd's image store is kept across down/up).
usage in a shell:  hack/controlplane.sh up && eval "\$(hack/controlplane.sh env)"
EOF
}

say() { echo "controlplane: $*" >&2; }
die() { say "error: $*"; exit 1; }

bin_dir() { "$here/controlplane/build.sh" --print-dir; }

# shellcheck source=controlplane/node.sh
. "$here/controlplane/node.sh"

# ---- processes ------------------------------------------------------------

pid_of() { # prints the recorded pid of a component if that process still runs it
  local c=$1 f="$RUN/pids/$1.pid" pid exe
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  # Guard against a recycled pid: the process must run the binary we started.
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  case "$exe" in
    */"$c"|*/"$c"" (deleted)") echo "$pid" ;;
    # Components that are scripts: the script's name is in the command line.
    */bash) tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "/$c.sh " && echo "$pid" || return 1 ;;
    *) return 1 ;;
  esac
}

start() { # start <component> <binary path> args...
  local c=$1 exe=$2; shift 2
  mkdir -p "$RUN/logs" "$RUN/pids"
  echo "+ $exe $*" >"$RUN/logs/$c.log"
  # Own session, no inherited stdio: the components outlive the caller (make,
  # cargo test) and never hold its output pipes open. No proxies: everything
  # the components call (etcd, webhooks) is on 127.0.0.1.
  env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
    NO_PROXY=127.0.0.1,localhost \
    setsid "$exe" "$@" </dev/null >>"$RUN/logs/$c.log" 2>&1 9>&- &
  local pid=$! i
  echo "$pid" >"$RUN/pids/$c.pid"
  # env and setsid exec into the component; wait for that so pid_of sees it.
  for i in $(seq 1 50); do
    case "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" in */env|*/setsid) sleep 0.1 ;; *) break ;; esac
  done
}

stop_component() {
  local c=$1 pid i
  if pid=$(pid_of "$c"); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    say "stopped $c (pid $pid)"
  fi
  rm -f "$RUN/pids/$c.pid"
}

show_logs() {
  local c
  say "component logs are in $RUN/logs/"
  for c in "$@"; do
    [ -f "$RUN/logs/$c.log" ] || continue
    echo "----- last lines of $RUN/logs/$c.log -----" >&2
    tail -n 25 "$RUN/logs/$c.log" >&2
  done
}

fail_up() {
  say "error: $*"
  show_logs "${COMPONENTS[@]}" "${NODE_COMPONENTS[@]}"
  say "the partly started control plane is still running; stop it with: hack/controlplane.sh down"
  exit 1
}

wait_until() { # wait_until <what> <component whose death aborts> <command...>
  local what=$1 c=$2; shift 2
  local deadline=$(( $(date +%s) + UP_TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$c" ] && ! pid_of "$c" >/dev/null; then fail_up "$c exited while waiting for $what"; fi
    [ "$(date +%s)" -lt "$deadline" ] || fail_up "timed out after ${UP_TIMEOUT}s waiting for $what"
    sleep 0.5
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null && return
  local p
  while :; do
    p=$(( 20000 + RANDOM % 12000 ))
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

# ---- certificates and kubeconfigs ------------------------------------------

need_tool() { # need_tool <command> <Debian package>: install it with apt-get if missing
  command -v "$1" >/dev/null && return
  say "$1 is missing; installing the Debian package $2"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } >&2 \
    || die "cannot install $2; install $1 and retry"
}

pki() {
  local d="$RUN/pki"
  # Bump the marker when the set of certificates changes.
  [ -f "$d/done-2" ] && return
  rm -rf "$d"; mkdir -p "$d"
  (
    cd "$d"
    exec 2>>openssl.log >>openssl.log
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tessera-local-ca" \
      -keyout ca.key -out ca.crt -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    sign() { # sign <name> <subject> <extensions>
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr"
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$1.ext" -out "$1.crt"
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    sign admin "/O=system:masters/CN=tessera-admin" "$client"
    sign controller-manager "/CN=system:kube-controller-manager" "$client"
    sign scheduler "/CN=system:kube-scheduler" "$client"
    sign kwok "/O=system:masters/CN=kwok" "$client"
    # ServiceAccount token signing key.
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
    node_pki
  ) || die "certificate generation failed; see $d/openssl.log"
  touch "$d/done-2"
}

kubeconfig() { # kubeconfig <file> <client cert name> <server url>
  local d="$RUN/pki"
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tessera
  cluster:
    server: $3
    certificate-authority: $d/ca.crt
users:
- name: $2
  user:
    client-certificate: $d/$2.crt
    client-key: $d/$2.key
contexts:
- name: tessera
  context: {cluster: tessera, user: $2, namespace: default}
current-context: tessera
EOF
}

# ---- health ---------------------------------------------------------------

api_url() { [ -f "$RUN/ports" ] && sed -n 's/^apiserver=//p' "$RUN/ports" | sed 's|^|https://127.0.0.1:|'; }

api_ready() {
  local url; url=$(api_url) || return 1; [ -n "$url" ] || return 1
  curl -sf --max-time 5 --cacert "$RUN/pki/ca.crt" --cert "$RUN/pki/admin.crt" --key "$RUN/pki/admin.key" \
    "$url/readyz" >/dev/null
}

all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || return 1; done
}

nodes_ready() { # Ready, and the node lifecycle controller lifted the not-ready taint
  local n
  n=$("$BIN/kubectl" --kubeconfig "$RUN/kubeconfig" get nodes -l type=kwok \
        -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{.spec.taints[*].key}{"\n"}{end}' \
        | sed "s| ${KWOK_TAINT%%=*}||" | grep -c '^True *$' || true)
  [ "$n" -ge "$NODES" ]
}

# ---- commands ---------------------------------------------------------------

cmd_up() {
  local start_time; start_time=$(date +%s)
  need_tool openssl openssl; need_tool curl curl; need_tool flock util-linux; need_tool setsid util-linux
  BIN=$("$here/controlplane/build.sh") || die "building the control plane binaries failed (see the log named above)"
  mkdir -p "$RUN"
  exec 9>"$RUN/.lock"
  flock -n 9 || die "another 'hack/controlplane.sh' is running (it holds $RUN/.lock): wait for it to finish, or stop it"

  if all_running && api_ready && nodes_ready; then
    if ! node_enabled || { node_status >/dev/null && k=("$BIN/kubectl" --kubeconfig "$RUN/kubeconfig") && node_ready; }; then
      say "already up ($(api_url))"; return 0
    fi
  fi
  if [ -d "$RUN/pids" ] && ls "$RUN/pids/"*.pid >/dev/null 2>&1; then
    say "control plane partly running or unhealthy; restarting it"
    cmd_down_locked
  fi

  if node_enabled; then node_preflight; fi
  pki
  local etcd_port etcd_peer api_port kcm_port sched_port kwok_port
  local taken=" " port_var
  for port_var in etcd_port etcd_peer api_port kcm_port sched_port kwok_port; do
    local p_
    p_=$(free_port)
    while [[ "$taken" == *" $p_ "* ]]; do p_=$(free_port); done
    taken+="$p_ "
    printf -v "$port_var" '%s' "$p_"
  done
  printf 'etcd=%s\netcd-peer=%s\napiserver=%s\ncontroller-manager=%s\nscheduler=%s\nkwok=%s\n' \
    "$etcd_port" "$etcd_peer" "$api_port" "$kcm_port" "$sched_port" "$kwok_port" >"$RUN/ports"
  local api="https://127.0.0.1:$api_port" p="$RUN/pki"
  rm -rf "$RUN/etcd" "$RUN/logs"; mkdir -p "$RUN/logs"
  kubeconfig "$RUN/kubeconfig" admin "$api"
  kubeconfig "$RUN/controller-manager.kubeconfig" controller-manager "$api"
  kubeconfig "$RUN/scheduler.kubeconfig" scheduler "$api"
  kubeconfig "$RUN/kwok.kubeconfig" kwok "$api"

  start etcd "$BIN/etcd" --name tessera --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "tessera=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --log-level warn
  wait_until "etcd on 127.0.0.1:$etcd_port" etcd curl -sf "http://127.0.0.1:$etcd_port/health"

  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --endpoint-reconciler-type none \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$p/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --enable-admission-plugins PodNodeSelector,PodTolerationRestriction \
    --allow-privileged=true --profiling=false -v=1
  wait_until "kube-apiserver /readyz on $api" kube-apiserver api_ready

  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$RUN/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$RUN/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$RUN/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
    --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
    --enable-hostpath-provisioner=true --profiling=false -v=1

  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$RUN/scheduler.kubeconfig" \
    --authentication-kubeconfig "$RUN/scheduler.kubeconfig" \
    --authorization-kubeconfig "$RUN/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --profiling=false -v=1

  start kwok "$BIN/kwok" --kubeconfig "$RUN/kwok.kubeconfig" \
    --config "$BIN/../kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr "${KWOK_POD_CIDR%.0/*}.1/${KWOK_POD_CIDR#*/}" --node-ip 10.255.0.1 --node-lease-duration-seconds 40 \
    --server-address "127.0.0.1:$kwok_port"

  local k=("$BIN/kubectl" --kubeconfig "$RUN/kubeconfig")
  wait_until "the default ServiceAccount (controller-manager)" kube-controller-manager \
    "${k[@]}" -n default get serviceaccount default
  # WaitForFirstConsumer, as most clusters' default classes are: a claim is
  # provisioned once the scheduler has picked its pod's node. With Immediate,
  # a pod created before its claim is bound fails scheduling, and every PV
  # event sends every such pod back for another attempt: with 200 claims
  # that was 250,000 failed attempts, and the scheduler's churn starved the
  # controller-manager on 2 cores (docs/benchmarks.md, issue 18).
  "${k[@]}" apply -f - >/dev/null <<EOF || fail_up "creating the StorageClass failed"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
EOF
  local i nodes=""
  for i in $(seq 0 $((NODES - 1))); do
    nodes+="---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: \"0\"
  labels:
    type: kwok
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    topology.kubernetes.io/zone: zone-$((i % 3))
spec:
  taints:
  - {key: ${KWOK_TAINT%%=*}, value: fake, effect: NoSchedule}
status:
  allocatable: {cpu: \"32\", memory: 256Gi, pods: \"110\", ephemeral-storage: 1Ti}
  capacity: {cpu: \"32\", memory: 256Gi, pods: \"110\", ephemeral-storage: 1Ti}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
"
  done
  printf '%s' "$nodes" | "${k[@]}" apply -f - >/dev/null || fail_up "creating the kwok nodes failed"
  wait_until "$NODES kwok nodes Ready" kwok nodes_ready
  wait_until "kube-scheduler /readyz" kube-scheduler \
    curl -skf "https://127.0.0.1:$sched_port/readyz"
  if node_enabled; then node_up "$api"; fi
  say "up in $(( $(date +%s) - start_time ))s: $api (kubeconfig $RUN/kubeconfig, logs $RUN/logs/)"
}

cmd_down_locked() {
  local c left
  BIN=$(bin_dir)
  node_down
  for ((i=${#COMPONENTS[@]}-1; i>=0; i--)); do stop_component "${COMPONENTS[$i]}"; done
  rm -f "$RUN/ports"
  left=$(node_leftovers)
  if [ -n "$left" ]; then
    say "error: down left these behind:"; echo "$left" | sed 's/^/  /' >&2
    return 1
  fi
  # Forget what the node had added only once it is all gone.
  rm -f "$NODE/added"
}

cmd_down() {
  [ -d "$RUN" ] || { say "nothing to stop"; return 0; }
  exec 9>"$RUN/.lock"
  flock -w 600 9 || die "another controlplane.sh holds $RUN/.lock"
  cmd_down_locked
  say "down (state and logs kept in $RUN)"
}

cmd_status() {
  local c pid ok=0
  for c in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then printf '%-24s running (pid %s)\n' "$c" "$pid"
    else printf '%-24s stopped\n' "$c"; ok=1; fi
  done
  if node_enabled; then node_status || ok=1; fi
  if api_ready; then
    printf '%-24s ready at %s\n' "api" "$(api_url)"
    BIN=$(bin_dir)
    if [ -x "$BIN/kubectl" ]; then
      printf '%-24s %s\n' "nodes" "$("$BIN/kubectl" --kubeconfig "$RUN/kubeconfig" get nodes --no-headers 2>/dev/null \
        | awk '{printf "%s=%s ", $1, $2}')"
    fi
  else
    printf '%-24s not answering\n' "api"; ok=1
  fi
  echo "kubeconfig: $RUN/kubeconfig"
  echo "logs:       $RUN/logs/"
  return $ok
}

cmd_env() {
  local b; b=$(bin_dir)
  echo "export KUBECONFIG='$RUN/kubeconfig'"
  echo "export CONTAINERD_ADDRESS='$NODE/containerd.sock'"
  echo "export PATH='$b':\"\$PATH\""
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  build) "$here/controlplane/build.sh" ;;
  -h|--help|help) usage ;;
  "") usage >&2; exit 2 ;;
  *) say "unknown command: $1"; usage >&2; exit 2 ;;
esac
