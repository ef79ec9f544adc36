#!/usr/bin/env bash
# Installs the real engines the tests run against, on Debian:
#   redis-server, memcached, zookeeper, etcd, promtool, nutcracker (apt),
#   the real node's containerd, runc, CNI plugins, iptables and conntrack,
#   and the image tools mmdebstrap and buildah (apt),
#   Apache Kafka jars (Maven, cached outside the repository).
# Idempotent and quiet when everything is already there.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TESSERA_CACHE:-$HOME/.cache/tessera}
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
kafka_libs="$cache/kafka/$kafka_version/libs"

log() { echo "install-test-deps: $*" >&2; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

packages=(redis-server memcached zookeeper etcd-server prometheus nutcracker libmemcached-tools maven mmdebstrap buildah)
# The real node of hack/controlplane.sh (its own containerd, not the service).
packages+=(containerd runc containernetworking-plugins iptables conntrack socat)
command -v java >/dev/null 2>&1 || packages+=(default-jre-headless)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  # Tests start their own engines on free ports: keep the packages' init
  # scripts from starting services on the default ports.
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e "$policy" ] && had_policy=1
  if [ $had_policy -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
  fi
  trap '[ $had_policy -eq 0 ] && $sudo rm -f "$policy"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists only when apt has none or cannot find a package.
  if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ] \
     || ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # On systemd machines policy-rc.d is not always honoured: stop what started.
  for svc in redis-server memcached zookeeper etcd prometheus prometheus-node-exporter nutcracker containerd; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
      $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
  done
fi

if [ ! -e "$kafka_libs/.complete" ]; then
  log "resolving Kafka $kafka_version jars into $kafka_libs"
  tmp="$kafka_libs.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp"
  rm -rf "$kafka_libs"
  mv "$tmp" "$kafka_libs"
  touch "$kafka_libs/.complete"
fi
