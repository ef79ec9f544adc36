#!/usr/bin/env bash
# tessera-sidecar benchmark: idle RSS and /readyz latency at 200 req/s
# against a healthy redis-server. Usage: bench/sidecar.sh [rate] [seconds]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${TESSERA_CACHE:-$HOME/.cache/tessera}/target}
cargo build --quiet --release --locked -p tessera-sidecar --bin tessera-sidecar --example readyz_load
"$CARGO_TARGET_DIR/release/examples/readyz_load" "$CARGO_TARGET_DIR/release/tessera-sidecar" "${1:-200}" "${2:-30}"
