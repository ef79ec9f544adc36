#!/usr/bin/env bash
# Makes the directories of hostPath PersistentVolumes writable by any user.
#
# The controller-manager's hostPath provisioner (the "standard" StorageClass
# of the local control plane) creates each volume as a root-owned 0750
# directory, and the kubelet applies a pod's fsGroup to no hostPath volume.
# Tessera's pods run as non-root users (ZooKeeper 1000, etcd 65532, ...), so
# on the real node they could not write their data. Real clusters' volume
# plugins honour fsGroup; this stands in for that on the local control plane
# only. It polls rather than needing inotify-tools, and touches nothing but
# the provisioner's own folder.
set -euo pipefail
dir=${1:?usage: volume-perms.sh <hostPath provisioner folder>}
mkdir -p "$dir"
while :; do
  find "$dir" -mindepth 1 -maxdepth 1 -type d ! -perm -0777 -exec chmod 0777 {} + 2>/dev/null || true
  sleep 0.2
done
