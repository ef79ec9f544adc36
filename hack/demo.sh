#!/usr/bin/env bash
# make demo: the local control plane with its real node, the CRDs, the
# operator running under its own ServiceAccount (the RBAC the chart ships),
# and the Ensemble examples, until they are Ready because ZooKeeper and etcd
# really run and the sidecar's probes pass. Then it writes through one member
# and reads back through another. Leaves everything running; prints how to
# look around and how to stop the operator.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TESSERA_CACHE:-$HOME/.cache/tessera}"
DEMO="$CACHE/demo"
NS="${TESSERA_DEMO_NAMESPACE:-tessera-demo}"
CARGO="${CARGO:-cargo}"
mkdir -p "$DEMO"

say() { printf '\n\033[1mdemo: %s\033[0m\n' "$*" >&2; }

say "starting the local control plane (the first build takes long)"
"$root/hack/controlplane.sh" up
eval "$("$root/hack/controlplane.sh" env)"

say "installing the CRDs"
kubectl apply --server-side --force-conflicts --field-manager=tessera-demo -f "$root/crds/" >/dev/null
kubectl wait --for condition=Established --timeout=60s -f "$root/crds/" >/dev/null

say "building tessera-operator"
(cd "$root" && "$CARGO" build --quiet --locked -p tessera-operator)
bin="${CARGO_TARGET_DIR:-$root/target}/debug/tessera-operator"

say "the operator's ServiceAccount and ClusterRole (charts/tessera/files/operator-rbac.yaml)"
kubectl create namespace tessera-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply --server-side --force-conflicts --field-manager=tessera-demo \
  -f "$root/charts/tessera/files/operator-rbac.yaml" >/dev/null
token="$(kubectl -n tessera-system create token tessera-operator --duration=24h)"
kc="$DEMO/operator.kubeconfig"
kubectl config view --raw --minify --flatten >"$kc"
KUBECONFIG="$kc" kubectl config set-credentials tessera-operator --token="$token" >/dev/null
KUBECONFIG="$kc" kubectl config set-context --current --user=tessera-operator >/dev/null

# One operator at a time: stop the one a previous demo started (by its pid).
if [ -f "$DEMO/operator.pid" ]; then
  old="$(cat "$DEMO/operator.pid")"
  if [ -d "/proc/$old" ] && [ "$(readlink "/proc/$old/exe" 2>/dev/null | sed 's/ (deleted)$//')" = "$(readlink -f "$bin")" ]; then
    kill -TERM "$old" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$old" ] || break; sleep 0.2; done
  fi
fi
# No registry here: the engines run from images built from Debian packages
# (hack/images.sh), which honour the official images' contract.
engine_images="$("$root/hack/images.sh" engine-map)"
say "starting the operator (log: $DEMO/operator.log, metrics: http://127.0.0.1:18080/metrics)"
echo "  --engine-image $engine_images" >&2
KUBECONFIG="$kc" setsid "$bin" run --metrics-addr 127.0.0.1:18080 --namespaces "$NS" \
  --engine-image "$engine_images" \
  </dev/null >"$DEMO/operator.log" 2>&1 &
echo $! >"$DEMO/operator.pid"
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1 && break
  [ -d "/proc/$(cat "$DEMO/operator.pid")" ] || { cat "$DEMO/operator.log" >&2; exit 1; }
  sleep 0.2
done

say "applying examples/ensemble-zookeeper.yaml and examples/ensemble-etcd.yaml into namespace $NS"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$NS" apply -f "$root/examples/ensemble-zookeeper.yaml" -f "$root/examples/ensemble-etcd.yaml"
if ! kubectl -n "$NS" wait --for condition=Ready --timeout=300s ensemble/zk ensemble/etcd; then
  kubectl -n "$NS" get ensembles,pods -o wide >&2 || true
  kubectl -n "$NS" get events --sort-by=.lastTimestamp | tail -20 >&2 || true
  echo "demo: the Ensembles did not become Ready; operator log: $DEMO/operator.log" >&2
  exit 1
fi

say "kubectl -n $NS get tessera"
kubectl -n "$NS" get tessera
say "their children"
kubectl -n "$NS" get statefulsets,services,configmaps,poddisruptionbudgets,pods,persistentvolumeclaims \
  -l app.kubernetes.io/managed-by=tessera-operator
say "generated zoo.cfg"
kubectl -n "$NS" get configmap zk-config -o jsonpath='{.data.zoo\.cfg}'

say "ZooKeeper answers: each member's mode (srvr), a znode written on zk-0 and read on zk-2"
for i in 0 1 2; do
  printf 'zk-%s: ' "$i"
  kubectl -n "$NS" exec "zk-$i" -c zookeeper -- bash -c \
    'exec 3<>/dev/tcp/127.0.0.1/2181; echo srvr >&3; cat <&3' | sed -n 's/^Mode: //p'
done
# zkCli.sh logs to stdout: keep only its answer.
zk() {
  kubectl -n "$NS" exec "$1" -c zookeeper -- bash -c "zkCli.sh -server 127.0.0.1:2181 $2 2>/dev/null" \
    | { grep -Ev '^([0-9]{4}-[0-9]{2}-[0-9]{2} |[0-9:,]+ \|-|WATCHER::|WatchedEvent |Connecting to |$)' || true; } | tail -n 1
}
# create fails when an earlier demo made the znode; set works either way.
zk zk-0 'create /tessera-demo' >/dev/null 2>&1 || true
zk zk-0 'set /tessera-demo hello-from-zk-0' >/dev/null
echo "zk-0: set /tessera-demo hello-from-zk-0"
echo "zk-2: get /tessera-demo -> $(zk zk-2 'get /tessera-demo')"

say "etcd answers: a key put through etcd-0, read through etcd-2, and the members"
printf 'etcd-0: put /tessera/demo hello-from-etcd-0 -> '
kubectl -n "$NS" exec etcd-0 -c etcd -- etcdctl put /tessera/demo hello-from-etcd-0
printf 'etcd-2: get /tessera/demo -> '
kubectl -n "$NS" exec etcd-2 -c etcd -- etcdctl get --print-value-only /tessera/demo
kubectl -n "$NS" exec etcd-0 -c etcd -- etcdctl endpoint status --cluster -w table

say "the adapter's uniform metrics of zk-0 (through the API server's pod proxy)"
kubectl get --raw "/api/v1/namespaces/$NS/pods/zk-0:9121/proxy/metrics" | grep -E '^tessera_(up|role|is_leader)[{ ]'

cat >&2 <<MSG

The operator keeps running (pid $(cat "$DEMO/operator.pid")), and so do the
engines, on the real node "tessera-node". Try:
  eval "\$(hack/controlplane.sh env)"
  kubectl -n $NS get tessera,pods -o wide
  kubectl -n $NS describe ensemble zk
  kubectl -n $NS logs zk-0 -c zookeeper
  kubectl -n $NS exec -it etcd-0 -c etcd -- etcdctl member list
  kubectl get --raw /api/v1/namespaces/$NS/pods/etcd-0:9121/proxy/metrics
  hack/controlplane.sh status
Stop it with: kill \$(cat $DEMO/operator.pid)
MSG
