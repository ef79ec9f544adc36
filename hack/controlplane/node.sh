# shellcheck shell=bash
# The real node: containerd, runc and the CNI bridge from Debian, kubelet and
# kube-proxy built with the control plane, and CoreDNS for cluster DNS.
# Sourced by hack/controlplane.sh, whose helpers (start, pid_of, wait_until,
# say, die, fail_up, free_port) it uses. Pods on this node run for real; the
# kwok nodes beside it only pretend to, and carry the taint KWOK_TAINT so that
# nothing lands on them without asking (see docs/development.md).
#
# Everything this file adds to the machine is recorded in $NODE/added and
# removed again by node_down: processes (by pid), containers, mounts, the
# bridge, routes, iptables rules, ip_forward, and the few paths that
# containerd and the kubelet write outside the state folder.

NODE_NAME=tessera-node
NODE_BRIDGE="${TESSERA_NODE_BRIDGE:-tessera0}"
# Pod subnet on the bridge; its first address is the bridge, the node's
# InternalIP and the cluster DNS server.
NODE_CIDR="${TESSERA_NODE_CIDR:-10.89.0.0/24}"
# A /16 as in real clusters (kubeadm's default is a /12): with a /24, 200
# Services nearly fill the range and every ClusterIP allocation probes a
# full one, which made Service creates the slowest write of the operator
# benchmark (docs/benchmarks.md).
SERVICE_CIDR=10.0.0.0/16
# The kwok nodes hand out pod IPs from here; nothing answers on them. An
# unreachable route keeps connections to those pods (the operator asking an
# engine for its role) on this machine, failing at once, instead of sending
# SYNs out of the default route and waiting for a timeout.
KWOK_POD_CIDR=10.244.0.0/16
CLUSTER_DOMAIN=cluster.local
KWOK_TAINT="kwok.x-k8s.io/node=fake:NoSchedule"
# socat forwards the API server (bound to 127.0.0.1) to pods: see node_api_up.
NODE_COMPONENTS=(containerd kubelet kube-proxy coredns volume-perms socat)
# Where the controller-manager's hostPath provisioner creates volumes.
HOSTPATH_PV_DIR=/tmp/hostpath_pv
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack socat)
# Pods reach the API server through the 'kubernetes' Service, whose
# endpoint is this port on the bridge address.
NODE_API_PORT="${TESSERA_NODE_API_PORT:-6443}"
SANDBOX_IMAGE=tessera.local/pause:catatonit
NODE="$RUN/node"
GUARD_CHAIN=TESSERA-NODE-GUARD

node_enabled() { [ "${TESSERA_NODE:-1}" != 0 ]; }

# The bridge address: the network address plus one (x.y.z.0/24 -> x.y.z.1).
node_ip() { local n=${NODE_CIDR%/*}; echo "${n%.*}.$(( ${n##*.} + 1 ))"; }

# Paths outside $NODE that containerd (shim sockets), libcni (result cache)
# and the kubelet (device plugins, container log links) write no matter how
# they are configured. node_down removes those that did not exist before.
# The hostPath volumes go too: their claims lived in this control plane's
# etcd, which the next 'up' starts afresh.
NODE_OUTSIDE_PATHS=(/run/containerd /var/lib/cni /var/lib/kubelet /var/log/containers /var/log/pods /opt/containerd "$HOSTPATH_PV_DIR")

added() { echo "$*" >>"$NODE/added"; }
was_added() { [ -f "$NODE/added" ] && grep -qxF "$*" "$NODE/added"; }

node_preflight() {
  [ "$(id -u)" -eq 0 ] || die "the real node needs root (network setup, mounts); run as root or set TESSERA_NODE=0 for kwok nodes only"
  local p missing=()
  for p in "${NODE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    die "Debian packages missing for the real node: ${missing[*]}; run hack/install-test-deps.sh (or apt-get install ${missing[*]})"
  fi
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] \
    || die "CNI plugins missing in /usr/lib/cni; reinstall containernetworking-plugins"
  for p in kubelet kube-proxy; do
    [ -x "$BIN/$p" ] || die "$p is missing in $BIN; run hack/controlplane.sh build"
  done
  # The bridge address must be ours alone: another interface holding an
  # address in the subnet would take the node's traffic.
  local ip; ip=$(node_ip)
  local holder
  holder=$(ip -o -4 addr show | awk -v ip="$ip" -v br="$NODE_BRIDGE" '{split($4,a,"/"); if (a[1]==ip && $2!=br) print $2}')
  [ -z "$holder" ] || die "the node's bridge address $ip is already on interface $holder; pick another subnet with TESSERA_NODE_CIDR (now $NODE_CIDR)"
  if ip -o -4 route show to "$NODE_CIDR" | grep -qv " dev $NODE_BRIDGE "; then
    die "a route for $NODE_CIDR already exists ($(ip -o -4 route show to "$NODE_CIDR" | head -1)); pick another subnet with TESSERA_NODE_CIDR"
  fi
  if ss -Hltn "sport = :$NODE_API_PORT" | awk '{print $4}' | grep -qE "^($ip|0\.0\.0\.0|\*|\[::\]):$NODE_API_PORT$"; then
    die "TCP port $NODE_API_PORT on $ip is taken ($(ss -Hltnp "sport = :$NODE_API_PORT" | head -1)); pods reach the API server there: pick another with TESSERA_NODE_API_PORT"
  fi
  if ss -Hlun "sport = :53" | awk '{print $4}' | grep -qE "^($ip|0\.0\.0\.0|\*|\[::\]):53$"; then
    die "UDP port 53 on $ip is taken ($(ss -Hlunp "sport = :53" | head -1)); cluster DNS needs it"
  fi
}

# ---- network --------------------------------------------------------------

node_network_up() {
  local ip; ip=$(node_ip)
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge || die "cannot create bridge $NODE_BRIDGE"
    added "link $NODE_BRIDGE"
  fi
  ip -4 addr show dev "$NODE_BRIDGE" | grep -q " $ip/" || ip addr add "$ip/${NODE_CIDR#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # The bridge plugin turns ip_forward on; remember what it was.
  [ -f "$NODE/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward >"$NODE/ip_forward.orig"
  # Guard: nothing from the pods may leave through another interface. Pods
  # get no default route and no upstream DNS either; this catches the rest.
  if ! iptables -w -t mangle -S "$GUARD_CHAIN" >/dev/null 2>&1; then
    iptables -w -t mangle -N "$GUARD_CHAIN"
    added "chain mangle $GUARD_CHAIN"
  fi
  iptables -w -t mangle -F "$GUARD_CHAIN"
  iptables -w -t mangle -A "$GUARD_CHAIN" -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -j DROP \
    -m comment --comment "tessera: pod traffic stays on this machine"
  iptables -w -t mangle -C FORWARD -j "$GUARD_CHAIN" 2>/dev/null || iptables -w -t mangle -I FORWARD 1 -j "$GUARD_CHAIN"
  # Service traffic from the host goes to the bridge (kube-proxy DNATs it to
  # pods); no route for anything else is added.
  if ! ip -4 route show "$SERVICE_CIDR" | grep -q "dev $NODE_BRIDGE"; then
    ip route replace "$SERVICE_CIDR" dev "$NODE_BRIDGE" src "$ip"
    added "route $SERVICE_CIDR"
  fi
  if ! ip -4 route show "$KWOK_POD_CIDR" | grep -q "^unreachable"; then
    ip route add unreachable "$KWOK_POD_CIDR" || die "cannot add the unreachable route for the kwok pods' $KWOK_POD_CIDR"
    added "route unreachable $KWOK_POD_CIDR"
  fi
}

node_network_down() {
  if iptables -w -t mangle -S "$GUARD_CHAIN" >/dev/null 2>&1; then
    while iptables -w -t mangle -D FORWARD -j "$GUARD_CHAIN" 2>/dev/null; do :; done
    iptables -w -t mangle -F "$GUARD_CHAIN"
    iptables -w -t mangle -X "$GUARD_CHAIN"
  fi
  ip -4 route del "$SERVICE_CIDR" dev "$NODE_BRIDGE" 2>/dev/null || true
  ip -4 route del unreachable "$KWOK_POD_CIDR" 2>/dev/null || true
  # Veth ends of pods that outlived their sandboxes, then the bridge.
  local v
  for v in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$v" 2>/dev/null || true
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  if [ -f "$NODE/ip_forward.orig" ]; then
    cat "$NODE/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward
    rm -f "$NODE/ip_forward.orig"
  fi
}

# ---- certificates ------------------------------------------------------------

node_pki() { # called inside the pki folder by pki()
  local ip; ip=$(node_ip)
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  # The kubelet's serving certificate; the API server verifies it.
  sign kubelet-serving "/CN=$NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$ip,DNS:$NODE_NAME"
  # The kubelet's identity towards the API server (Node authorizer).
  sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  # The API server's identity towards the kubelet (exec, logs, port-forward).
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  # kube-proxy: bound to system:node-proxier by the default RBAC.
  sign kube-proxy "/CN=system:kube-proxy" "$client"
  # CoreDNS: bound to the ClusterRole node_rbac creates.
  sign coredns "/CN=system:coredns" "$client"
}

node_rbac() {
  "${k[@]}" apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:coredns}
EOF
}

# ---- configuration ------------------------------------------------------------

node_configs() {
  local ip p="$RUN/pki" api=$1
  ip=$(node_ip)
  mkdir -p "$NODE/cni/net.d" "$NODE/cni/ipam" "$NODE/containerd" "$NODE/kubelet" "$NODE/pod-logs"
  kubeconfig "$NODE/kubelet.kubeconfig" kubelet "$api"
  kubeconfig "$NODE/kube-proxy.kubeconfig" kube-proxy "$api"
  kubeconfig "$NODE/coredns.kubeconfig" coredns "$api"

  cat >"$NODE/containerd.toml" <<EOF
version = 2
root = "$NODE/containerd/root"
state = "$NODE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$NODE/containerd.sock"
[ttrpc]
  address = "$NODE/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  # No registry is reachable: the sandbox image is built locally (hack/images.sh).
  sandbox_image = "$SANDBOX_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: runc may only raise oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$NODE/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE/cni/net.d"
EOF

  # isGateway without isDefaultGateway: pods get the bridge address and a
  # route to the service CIDR only, no default route.
  cat >"$NODE/cni/net.d/10-tessera.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "tessera",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE/cni/ipam",
        "ranges": [[{"subnet": "$NODE_CIDR", "gateway": "$ip"}]],
        "routes": [{"dst": "$SERVICE_CIDR"}]
      }
    }
  ]
}
EOF

  cat >"$NODE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: $2
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $3
tlsCertFile: $p/kubelet-serving.crt
tlsPrivateKeyFile: $p/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $p/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$NODE/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$ip]
# No host resolvers in pods: names outside the cluster do not resolve.
resolvConf: ""
podLogsDir: $NODE/pod-logs
# Locally imported images cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Under disk pressure the kubelet deletes every image no container uses,
# whatever the GC thresholds (containerd 1.6 cannot pin them), and the next
# pod fails with ErrImageNeverPull. Builds on a developer machine come and
# go by gigabytes, so pressure starts only when the disk is really full.
evictionHard: {memory.available: 100Mi, nodefs.available: 200Mi, imagefs.available: 200Mi}
maxPods: 110
serializeImagePulls: false
EOF

  cat >"$NODE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$4
metricsBindAddress: 127.0.0.1:$5
nodePortAddresses: ["$ip/32"]
iptables: {localhostNodePorts: false}
# 0: leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF

  # Cluster names only, served on the bridge address. No forward plugin:
  # anything outside cluster.local is refused, never sent upstream.
  cat >"$NODE/Corefile" <<EOF
$CLUSTER_DOMAIN:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $ip
    errors
    health 127.0.0.1:$6
    ready 127.0.0.1:$7
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $NODE/coredns.kubeconfig
        pods verified
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
EOF
}

# ---- lifecycle ------------------------------------------------------------------

node_ready() {
  [ "$("${k[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

containerd_ready() { ctr --address "$NODE/containerd.sock" version >/dev/null 2>&1; }

node_up() { # node_up <api url>
  node_preflight
  mkdir -p "$NODE"
  local path
  for path in "${NODE_OUTSIDE_PATHS[@]}"; do
    [ -e "$path" ] || was_added "path $path" || added "path $path"
  done
  # KUBE-* chains that exist before our kubelet starts belong to someone
  # else: then down leaves every KUBE-* chain alone.
  if ! was_added "kube-chains ours" && ! was_added "kube-chains theirs"; then
    if [ -z "$(node_kube_chains)" ]; then added "kube-chains ours"; else added "kube-chains theirs"; fi
  fi
  # The pid-reuse guard in pid_of matches the binary's name.
  local coredns_bin
  coredns_bin=$("$here/coredns/build.sh") || die "building CoreDNS failed (see the log named above)"

  local kubelet_port kubelet_healthz proxy_healthz proxy_metrics dns_health dns_ready taken=" " v
  for v in kubelet_port kubelet_healthz proxy_healthz proxy_metrics dns_health dns_ready; do
    local p_; p_=$(free_port); while [[ "$taken" == *" $p_ "* ]]; do p_=$(free_port); done
    taken+="$p_ "; printf -v "$v" '%s' "$p_"
  done
  printf 'kubelet=%s\nkubelet-healthz=%s\nkube-proxy-healthz=%s\ncoredns-health=%s\ncoredns-ready=%s\n' \
    "$kubelet_port" "$kubelet_healthz" "$proxy_healthz" "$dns_health" "$dns_ready" >>"$RUN/ports"
  node_configs "$1" "$kubelet_port" "$kubelet_healthz" "$proxy_healthz" "$proxy_metrics" "$dns_health" "$dns_ready"
  node_network_up
  node_rbac || fail_up "creating the CoreDNS RBAC failed"

  start containerd "$(command -v containerd)" --config "$NODE/containerd.toml" --log-level warn
  wait_until "containerd on $NODE/containerd.sock" containerd containerd_ready
  "$here/images.sh" load --address "$NODE/containerd.sock" \
    || fail_up "loading the node's images into containerd failed; build them with: hack/images.sh build"

  start kubelet "$BIN/kubelet" --config "$NODE/kubelet.yaml" --kubeconfig "$NODE/kubelet.kubeconfig" \
    --root-dir "$NODE/kubelet" --hostname-override "$NODE_NAME" --node-ip "$(node_ip)" \
    --node-labels "tessera.dev/node=real" -v=1
  start kube-proxy "$BIN/kube-proxy" --config "$NODE/kube-proxy.yaml" -v=1
  start coredns "$coredns_bin" -conf "$NODE/Corefile"
  start volume-perms /usr/bin/bash "$here/controlplane/volume-perms.sh" "$HOSTPATH_PV_DIR"
  node_api_up "$1"
  wait_until "node $NODE_NAME Ready" kubelet node_ready
  wait_until "CoreDNS ready" coredns curl -sf "http://127.0.0.1:$dns_ready/ready"
  wait_until "kube-proxy healthy" kube-proxy curl -sf "http://127.0.0.1:$proxy_healthz/healthz"
}

# Pods (the operator installed by Helm, Prometheus) reach the API server as
# in any cluster: the 'kubernetes' Service (10.0.0.1:443, a name in the
# serving certificate) and the in-cluster ServiceAccount token. The API
# server stays bound to 127.0.0.1, so nothing outside this machine reaches
# it; socat relays the bridge address to it, and the Service's endpoint
# slice, which the API server's own reconciler would point at 127.0.0.1
# (refused by validation), is written here instead.
node_api_up() { # node_api_up <api url>
  local ip; ip=$(node_ip)
  start socat "$(command -v socat)" "TCP-LISTEN:$NODE_API_PORT,bind=$ip,fork,reuseaddr" "TCP:127.0.0.1:${1##*:}"
  "${k[@]}" apply --server-side --field-manager tessera-controlplane -f - >/dev/null <<EOF || fail_up "writing the endpoints of the kubernetes Service failed"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels:
    kubernetes.io/service-name: kubernetes
    endpointslice.kubernetes.io/managed-by: tessera-controlplane
addressType: IPv4
endpoints:
  - addresses: ["$ip"]
    conditions: {ready: true}
ports:
  - name: https
    port: $NODE_API_PORT
    protocol: TCP
EOF
}

# Stop every pod's containers: the kubelet is gone by now, so ask containerd
# directly, then let the shims exit.
node_kill_containers() {
  containerd_ready || return 0
  local c=(ctr --address "$NODE/containerd.sock" -n k8s.io) t
  for t in $("${c[@]}" tasks ls -q 2>/dev/null); do
    "${c[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1 || true
  done
  for t in $("${c[@]}" tasks ls -q 2>/dev/null); do
    for _ in $(seq 1 20); do "${c[@]}" tasks delete "$t" >/dev/null 2>&1 && break; sleep 0.2; done
  done
  for t in $("${c[@]}" containers ls -q 2>/dev/null); do
    "${c[@]}" containers delete "$t" >/dev/null 2>&1 || true
  done
}

node_down() {
  [ -d "$NODE" ] || return 0
  stop_component socat
  stop_component volume-perms
  stop_component coredns
  stop_component kube-proxy
  stop_component kubelet
  node_kill_containers
  stop_component containerd
  # Shims outlive containerd; they belong to this node if they serve its
  # containerd socket.
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $NODE/containerd.sock" 2>/dev/null || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # kube-proxy's chains and conntrack entries for services, then whatever
  # KUBE-* chains remain (the kubelet's canaries and hints).
  if [ -x "${BIN:-}/kube-proxy" ]; then "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  if ! was_added "kube-chains theirs"; then node_kube_chains_down; fi
  # Mounts under the node folder (overlay rootfs, netns, secrets), deepest first.
  local m
  for m in $(awk -v d="$NODE/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  for m in $(ls "$NODE/containerd/state/io.containerd.grpc.v1.cri/netns" 2>/dev/null); do
    ip netns del "$m" 2>/dev/null || true
  done
  node_network_down
  # The kubelet's pod cgroups (cgroupfs driver), innermost first.
  local cg
  for cg in $(find /sys/fs/cgroup/*/kubepods -depth -type d 2>/dev/null); do rmdir "$cg" 2>/dev/null || true; done
  local line
  if [ -f "$NODE/added" ]; then
    while read -r line; do
      case "$line" in path\ *) rm -rf "${line#path }" ;; esac
    done <"$NODE/added"
  fi
  # Container state goes; the image store stays so that the next 'up' does
  # not import every image again.
  rm -rf "$NODE/containerd/state" "$NODE/kubelet" "$NODE/runc" "$NODE/cni/ipam" "$NODE/pod-logs"
}

# The KUBE-* chains of every table, for iptables and ip6tables: "cmd table chain".
node_kube_chains() {
  local cmd t
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null 2>&1 || continue
    for t in filter nat mangle; do
      "$cmd" -w -t "$t" -S 2>/dev/null | awk -v c="$cmd" -v t="$t" '$1 == "-N" && $2 ~ /^KUBE-/ {print c, t, $2}'
    done
  done
}

node_kube_chains_down() {
  local cmd t chain rule
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null 2>&1 || continue
    for t in filter nat mangle; do
      # Jumps into KUBE-* chains first; a chain in use cannot be deleted.
      "$cmd" -w -t "$t" -S 2>/dev/null | grep -E -- '^-A [A-Z]+ .*-j KUBE-' | while read -r rule; do
        eval "\"\$cmd\" -w -t \"\$t\" ${rule/#-A/-D}" 2>/dev/null || true
      done || true
    done
  done
  node_kube_chains | while read -r cmd t chain; do "$cmd" -w -t "$t" -F "$chain" 2>/dev/null || true; done || true
  node_kube_chains | while read -r cmd t chain; do "$cmd" -w -t "$t" -X "$chain" 2>/dev/null || true; done || true
}

# What node_down leaves behind, one line each; empty when clean.
node_leftovers() {
  local c
  for c in "${NODE_COMPONENTS[@]}"; do pid_of "$c" >/dev/null && echo "process $c"; done
  pgrep -f "containerd-shim-runc-v2 .*-address $NODE/containerd.sock" >/dev/null 2>&1 && echo "process containerd-shim"
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && echo "interface $NODE_BRIDGE"
  ip -4 route show "$SERVICE_CIDR" 2>/dev/null | grep -q . && echo "route $SERVICE_CIDR"
  ip -4 route show "$KWOK_POD_CIDR" 2>/dev/null | grep -q . && echo "route $KWOK_POD_CIDR"
  iptables -w -t mangle -S "$GUARD_CHAIN" >/dev/null 2>&1 && echo "iptables chain $GUARD_CHAIN"
  if ! was_added "kube-chains theirs"; then node_kube_chains | sed 's/^/chain /'; fi
  awk -v d="$NODE/" 'index($2, d) == 1 {print "mount " $2}' /proc/self/mounts
  ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null | sed 's/^/cgroup /'
  true
}

node_status() { # prints lines; returns 1 if a part is down
  local c pid ok=0
  for c in "${NODE_COMPONENTS[@]}"; do
    if pid=$(pid_of "$c"); then printf '%-24s running (pid %s)\n' "$c" "$pid"
    else printf '%-24s stopped\n' "$c"; ok=1; fi
  done
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    printf '%-24s %s %s\n' "bridge" "$NODE_BRIDGE" "$(ip -o -4 addr show dev "$NODE_BRIDGE" | awk '{print $4}')"
  else
    printf '%-24s absent\n' "bridge"; ok=1
  fi
  if iptables -w -t mangle -C FORWARD -j "$GUARD_CHAIN" 2>/dev/null; then
    printf '%-24s in place (mangle FORWARD -> %s)\n' "guard" "$GUARD_CHAIN"
  else
    printf '%-24s missing\n' "guard"; ok=1
  fi
  return $ok
}
