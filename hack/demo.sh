#!/usr/bin/env bash
# make demo: the local control plane, the CRDs, the operator running under
# its own ServiceAccount (the RBAC the chart ships), and the Ensemble
# examples, until they are Ready. Leaves everything running; prints how to
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
say "starting the operator (log: $DEMO/operator.log, metrics: http://127.0.0.1:18080/metrics)"
KUBECONFIG="$kc" setsid "$bin" run --metrics-addr 127.0.0.1:18080 --namespaces "$NS" \
  --sidecar-image ghcr.io/tessera-dev/tessera-sidecar:dev \
  --adapter-image ghcr.io/tessera-dev/tessera-adapter:dev \
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
kubectl -n "$NS" wait --for condition=Ready --timeout=180s ensemble/zk ensemble/etcd

say "kubectl -n $NS get tessera"
kubectl -n "$NS" get tessera
say "their children"
kubectl -n "$NS" get statefulsets,services,configmaps,poddisruptionbudgets,pods,persistentvolumeclaims \
  -l app.kubernetes.io/managed-by=tessera-operator
say "generated zoo.cfg"
kubectl -n "$NS" get configmap zk-config -o jsonpath='{.data.zoo\.cfg}'

cat >&2 <<MSG

The operator keeps running (pid $(cat "$DEMO/operator.pid")). Try:
  eval "\$(hack/controlplane.sh env)"
  kubectl -n $NS scale ensemble/zk --replicas=5 && kubectl -n $NS get ens -w
  kubectl -n $NS describe ensemble zk
Stop it with: kill \$(cat $DEMO/operator.pid)
MSG
