#!/usr/bin/env bash
# Builds the container images the local cluster runs, without a registry:
# root filesystems from Debian packages (mmdebstrap), images from them and
# from the project's Dockerfile (buildah), archived as OCI archives and
# imported into containerd (ctr). docs/images.md has the contract of each
# image; hack/images/<name>/recipe is its recipe.
set -euo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
here=$(dirname "$self")
root=$(cd "$here/.." && pwd)
recipes=$here/images
cache=${TESSERA_CACHE:-$HOME/.cache/tessera}
out=$cache/images
export TESSERA_CACHE=$cache
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}

# Build order: tessera is built on base.
ALL=(base pause redis memcached zookeeper etcd kafka tessera)
# The images that stand in for an engine's official image, by the engine's
# name (the operator's --engine-image ENGINE=IMAGE).
ENGINES=(redis memcached zookeeper etcd kafka)

usage() {
  cat <<EOF
Usage: hack/images.sh COMMAND [ARGS]

Builds the images of the local cluster from Debian packages and the
project's Dockerfile, without a registry, and loads them into containerd.

Commands:
  build [NAME...]            Build every image, or the named ones, into an OCI
                             archive under $out/.
                             An image is rebuilt only when its recipe changed.
  load [--address SOCKET] [--snapshotter NAME] [NAME...]
                             Import the archives into containerd's k8s.io
                             namespace; images already there with the same
                             digest are skipped. SOCKET defaults to
                             \$CONTAINERD_ADDRESS or /run/containerd/containerd.sock.
  list                       Image names and the archives load would import.
  check [NAME...]            Run each image's contract checks (buildah run).
  engine-map                 The operator's --engine-image value for the
                             local engine images (redis=tessera.local/...,...).
  help, --help               This text.

Images: ${ALL[*]}

Environment:
  TESSERA_CACHE              Cache folder (default \$HOME/.cache/tessera).
  TESSERA_IMAGE_PROFILE      Cargo profile of the Tessera binaries: debug
                             (default, shares the test build) or release.
  CARGO_TARGET_DIR           Cargo's target folder (default \$TESSERA_CACHE/target).
  TESSERA_DEBIAN_SOURCES     apt sources for the root filesystems (default
                             /etc/apt/sources.list.d/debian.sources if present,
                             else deb.debian.org bookworm).
  TESSERA_BUILDAH_DRIVER     buildah storage driver: overlay or vfs (default:
                             overlay if it works here, else vfs).
  TESSERA_IMAGES_FORCE=1     Rebuild even when the recipe did not change.
EOF
}

log() { echo "images: $*" >&2; }
die() { echo "images: error: $*" >&2; exit 1; }

# The Debian package that provides a missing command.
need() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 && return 0
  die "'$cmd' is missing: install the Debian package '$pkg' (hack/install-test-deps.sh installs it, or: apt-get install --no-install-recommends $pkg)"
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "building images needs root (mmdebstrap's root mode and buildah's rootful storage); run it with sudo"
}

# --- recipes ---------------------------------------------------------------

# Reset every recipe variable, then source hack/images/<name>/recipe.
load_recipe() {
  name=$1
  dir=$recipes/$name
  [ -f "$dir/recipe" ] || die "unknown image '$name' (known: ${ALL[*]})"
  NAMES=() DESCRIPTION="" KIND=debian VARIANT=essential PACKAGES=() KEEP_PACKAGES=()
  ACCOUNTS=() VERSION_PACKAGE="" VERSION="" CONFIG=() INPUTS=() DEPENDS=()
  prepare() { :; }
  customize() { :; }
  check() { :; }
  # shellcheck source=/dev/null
  . "$dir/recipe"
  # shellcheck source=/dev/null
  if [ -f "$dir/check" ]; then . "$dir/check"; fi
  [ ${#NAMES[@]} -gt 0 ] || die "$dir/recipe sets no NAMES"
}

archive_of() { echo "$out/$1.oci.tar"; }

sources_file() {
  local s=${TESSERA_DEBIAN_SOURCES:-}
  if [ -z "$s" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    s=/etc/apt/sources.list.d/debian.sources
  fi
  echo "$s"
}

# Everything an image is made from: this script, the recipe folder (names,
# modes and contents; not the checks), the apt sources and the recipe's
# other inputs; for the Tessera image also the Dockerfile, the stripped
# binaries and the hash of the base image.
recipe_hash() {
  local name=$1 f src
  load_recipe "$name"
  src=$(sources_file)
  {
    echo "script"; sha256sum <"$self"
    (cd "$dir" && find . \( -type f -o -type l \) ! -path ./check -print | LC_ALL=C sort) | while read -r f; do
      echo "$f $(stat -c %a "$dir/$f")"
      if [ -L "$dir/$f" ]; then readlink "$dir/$f"; else sha256sum <"$dir/$f"; fi
    done
    echo "sources ${src:-default}"; [ -n "$src" ] && cat "$src"
    for f in "${INPUTS[@]}"; do
      echo "input $f"
      if [ -d "$f" ]; then
        (cd "$f" && find . -type f ! -name '.*' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
      elif [ -e "$f" ]; then sha256sum <"$f"
      else die "$name: input $f is missing"
      fi
    done
    for d in "${DEPENDS[@]}"; do
      echo "depends $d"; cat "$out/$d.hash" 2>/dev/null || echo missing
    done
    if [ "$KIND" = dockerfile ]; then
      echo "dockerfile"; sha256sum <"$root/Dockerfile"
      (cd "$out/context/$name" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    fi
  } | sha256sum | cut -d' ' -f1
}

# --- buildah -----------------------------------------------------------------

# buildah with its own storage under the cache, so that nothing global is
# touched. overlay where it works, else vfs (each driver has its own folder).
bh() {
  buildah --root "$out/storage-$driver" --runroot "$out/run-$driver" --storage-driver "$driver" "$@"
}

pick_driver() {
  driver=${TESSERA_BUILDAH_DRIVER:-}
  if [ -z "$driver" ] && [ -f "$out/storage.driver" ]; then driver=$(cat "$out/storage.driver"); fi
  if [ -z "$driver" ]; then
    driver=overlay
    local c
    if c=$(bh from --quiet scratch 2>/dev/null) && bh mount "$c" >/dev/null 2>&1; then
      bh umount "$c" >/dev/null 2>&1 || true
      bh rm "$c" >/dev/null 2>&1 || true
    else
      [ -n "${c:-}" ] && { bh rm "$c" >/dev/null 2>&1 || true; }
      log "buildah's overlay driver does not work here; using vfs"
      driver=vfs
    fi
    echo "$driver" >"$out/storage.driver"
  fi
  case $driver in overlay | vfs) ;; *) die "TESSERA_BUILDAH_DRIVER must be overlay or vfs, not '$driver'" ;; esac
}

# The image of a built archive in buildah's storage, imported from the
# archive when the storage no longer has it.
ensure_in_storage() {
  local name=$1 id n
  load_recipe "$name"
  [ -f "$(archive_of "$name")" ] || die "$name is not built: run hack/images.sh build $name"
  if ! bh inspect --type image "${NAMES[0]}" >/dev/null 2>&1 ||
    [ "$(cat "$out/$name.id" 2>/dev/null)" != "$(bh inspect --type image --format '{{.FromImageID}}' "${NAMES[0]}" 2>/dev/null)" ]; then
    id=$(bh pull --quiet "oci-archive:$(archive_of "$name")")
    for n in "${NAMES[@]}"; do bh tag "$id" "$n"; done
  fi
}

# --- root filesystems ----------------------------------------------------------

# Files of the Debian packages that are never needed in an image.
DPKG_EXCLUDES=(
  'path-exclude=/usr/share/man/*'
  'path-exclude=/usr/share/info/*'
  'path-exclude=/usr/share/lintian/*'
  'path-exclude=/usr/share/linda/*'
  'path-exclude=/usr/share/locale/*'
  'path-include=/usr/share/locale/locale.alias'
  'path-exclude=/usr/share/doc/*'
  'path-include=/usr/share/doc/*/copyright'
)

# mmdebstrap runs this script again for its hooks: `__hook STAGE NAME ROOTFS`.
hook() {
  local stage=$1 rootfs=$3
  load_recipe "$2"
  local debs=$out/debs
  case $stage in
    setup)
      # init-system-helpers depends on `usrmerge | usr-is-merged`, and apt
      # takes the first: usrmerge, which brings Perl (40 MB). The root
      # filesystem is merged by mmdebstrap's merged-usr hook instead, which
      # installs usr-is-merged.
      mkdir -p "$rootfs/etc/apt/preferences.d"
      printf 'Package: usrmerge\nPin: release *\nPin-Priority: -1\n' >"$rootfs/etc/apt/preferences.d/tessera-images"
      # Reuse the packages downloaded by earlier builds. Not for extract:
      # its hook tells the packages it unpacked by the files in the cache.
      mkdir -p "$rootfs/var/cache/apt/archives" "$debs"
      if [ "$VARIANT" != extract ]; then
        find "$debs" -name '*.deb' -exec cp --link -f -t "$rootfs/var/cache/apt/archives/" {} + 2>/dev/null ||
          find "$debs" -name '*.deb' -exec cp -f -t "$rootfs/var/cache/apt/archives/" {} +
      fi
      ;;
    essential)
      add_accounts "$rootfs"
      # update-alternatives links man pages too (OpenJDK's java.1), and
      # fails when their folder was never created (path-exclude above).
      mkdir -p "$rootfs/usr/share/man/man1"
      ;;
    extract)
      # Files only: no maintainer scripts ran, so write what they would.
      write_accounts "$rootfs"
      [ -e "$rootfs/etc/nsswitch.conf" ] || printf '%s\n' \
        'passwd:         files' 'group:          files' 'shadow:         files' \
        'hosts:          files dns' 'networks:       files' 'protocols:      files' \
        'services:       files' 'ethers:         files' 'rpc:            files' >"$rootfs/etc/nsswitch.conf"
      ca_bundle "$rootfs"
      finish "$rootfs"
      prune_packages "$rootfs"
      cleanup "$rootfs"
      ;;
    customize)
      finish "$rootfs"
      cleanup "$rootfs"
      ;;
  esac
}

# essential variant: the recipe's users and groups, before the packages that
# would otherwise create them with other ids.
add_accounts() {
  local rootfs=$1 a user uid gid home
  for a in "${ACCOUNTS[@]}"; do
    IFS=: read -r user uid gid home <<<"$a"
    grep -q "^$user:" "$rootfs/etc/group" || echo "$user:x:$gid:" >>"$rootfs/etc/group"
    grep -q "^$user:" "$rootfs/etc/passwd" || echo "$user:x:$uid:$gid:$user:$home:/usr/sbin/nologin" >>"$rootfs/etc/passwd"
    if [ -f "$rootfs/etc/shadow" ] && ! grep -q "^$user:" "$rootfs/etc/shadow"; then echo "$user:*:19000:0:99999:7:::" >>"$rootfs/etc/shadow"; fi
    if [ -f "$rootfs/etc/gshadow" ] && ! grep -q "^$user:" "$rootfs/etc/gshadow"; then echo "$user:*::" >>"$rootfs/etc/gshadow"; fi
  done
}

# extract variant: passwd and group as in distroless images.
write_accounts() {
  local rootfs=$1 a user uid gid home
  mkdir -p "$rootfs/etc"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  for a in "${ACCOUNTS[@]}"; do
    IFS=: read -r user uid gid home <<<"$a"
    echo "$user:x:$uid:$gid:$user:$home:/sbin/nologin" >>"$rootfs/etc/passwd"
    echo "$user:x:$gid:" >>"$rootfs/etc/group"
  done
  mkdir -p "$rootfs/root" "$rootfs/tmp"
  chmod 0700 "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
}

# What update-ca-certificates would write: every Mozilla root in one file.
ca_bundle() {
  local rootfs=$1
  [ -d "$rootfs/usr/share/ca-certificates/mozilla" ] || return 0
  mkdir -p "$rootfs/etc/ssl/certs"
  find "$rootfs/usr/share/ca-certificates/mozilla" -name '*.crt' -print0 | LC_ALL=C sort -z |
    xargs -0 cat >"$rootfs/etc/ssl/certs/ca-certificates.crt"
}

# The recipe's own files (hack/images/<name>/rootfs, owned by root), then its
# customize function; the packages it used are kept for the next build.
finish() {
  local rootfs=$1 f
  if [ -d "$dir/rootfs" ]; then
    cp -a --no-preserve=ownership "$dir/rootfs/." "$rootfs/"
  fi
  # Homes of the accounts, owned by them.
  for f in "${ACCOUNTS[@]}"; do
    local user uid gid home
    IFS=: read -r user uid gid home <<<"$f"
    case $home in /nonexistent | /) continue ;; esac
    mkdir -p "$rootfs$home"
    chown "$uid:$gid" "$rootfs$home"
  done
  customize "$rootfs"
  if [ -n "$VERSION_PACKAGE" ]; then
    local v=""
    if [ -f "$rootfs/var/lib/dpkg/status" ]; then
      v=$(dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f='${Version}' "$VERSION_PACKAGE" 2>/dev/null || true)
    fi
    if [ -z "$v" ]; then
      local deb
      deb=$(find "$rootfs/var/cache/apt/archives" -name "${VERSION_PACKAGE}_*.deb" | head -1)
      [ -n "$deb" ] && v=$(dpkg-deb -f "$deb" Version)
    fi
    echo "$v" >"$out/work/$name.version"
  fi
  find "$rootfs/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp --link -n -t "$out/debs/" {} + 2>/dev/null ||
    find "$rootfs/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n -t "$out/debs/" {} +
}

# extract variant: only the files of KEEP_PACKAGES stay (the others were
# extracted as dependencies); their control files go to
# /var/lib/dpkg/status.d/ as in distroless images, for scanners.
prune_packages() {
  local rootfs=$1 deb pkg keep k
  mkdir -p "$rootfs/var/lib/dpkg/status.d"
  for deb in "$rootfs"/var/cache/apt/archives/*.deb; do
    pkg=$(dpkg-deb -f "$deb" Package)
    keep=0
    for k in "${KEEP_PACKAGES[@]}"; do [ "$k" = "$pkg" ] && keep=1; done
    if [ $keep -eq 1 ]; then
      dpkg-deb -f "$deb" >"$rootfs/var/lib/dpkg/status.d/$pkg"
      continue
    fi
    dpkg-deb --fsys-tarfile "$deb" | tar -t | while read -r f; do
      f=${f#./}
      f=${f%/}
      [ -n "$f" ] || continue
      if [ -L "$rootfs/$f" ] || [ -f "$rootfs/$f" ]; then
        rm -f "$rootfs/$f"
      elif [ -d "$rootfs/$f" ]; then
        echo "$f" >>"$out/work/$name.dirs"
      fi
    done
  done
  # The removed packages' folders that are empty now, deepest first.
  if [ -f "$out/work/$name.dirs" ]; then
    LC_ALL=C sort -ru "$out/work/$name.dirs" | while read -r f; do
      rmdir "$rootfs/$f" 2>/dev/null || true
    done
    rm -f "$out/work/$name.dirs"
  fi
}

cleanup() {
  local rootfs=$1
  # mmdebstrap's copies of the host's files: the runtime mounts its own.
  rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname" "$rootfs/etc/apt/preferences.d/tessera-images"
  rm -rf "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/lintian \
    "$rootfs"/usr/share/linda "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/cache/ldconfig/aux-cache
  if [ -d "$rootfs/usr/share/locale" ]; then
    find "$rootfs/usr/share/locale" -mindepth 1 ! -name locale.alias -delete 2>/dev/null || true
  fi
  if [ -d "$rootfs/usr/share/doc" ]; then
    find "$rootfs/usr/share/doc" \( -type f -o -type l \) ! -name copyright -delete
    find "$rootfs/usr/share/doc" -depth -mindepth 1 -type d -empty -delete
  fi
  find "$rootfs/var/log" -type f -delete 2>/dev/null || true
}

rootfs_tarball() {
  local name=$1 tar=$2 src
  load_recipe "$name"
  src=$(sources_file)
  local args=(--variant="$VARIANT" --skip=essential/unlink --aptopt='APT::Install-Recommends "false"')
  [ ${#PACKAGES[@]} -gt 0 ] && args+=(--include="$(IFS=,; echo "${PACKAGES[*]}")")
  local o
  for o in "${DPKG_EXCLUDES[@]}"; do args+=(--dpkgopt="$o"); done
  args+=(--setup-hook="\"$self\" __hook setup $name \"\$1\"")
  if [ "$VARIANT" = extract ]; then
    args+=(--extract-hook="\"$self\" __hook extract $name \"\$1\"")
  else
    # merged /usr as debootstrap makes it (symlinks, usr-is-merged).
    args+=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
    args+=(--essential-hook="\"$self\" __hook essential $name \"\$1\"")
    args+=(--customize-hook="\"$self\" __hook customize $name \"\$1\"")
  fi
  TMPDIR=$out/work nice mmdebstrap "${args[@]}" bookworm "${tar%.tar}.full.tar" ${src:+"$src"}
  # Device nodes are the runtime's business; without dpkg (extract), so is
  # the package manager's configuration.
  local filter=(--path-exclude='/dev/*')
  [ "$VARIANT" = extract ] && filter+=(--path-exclude='/etc/apt' --path-exclude='/etc/apt/*'
    --path-exclude='/etc/dpkg' --path-exclude='/etc/dpkg/*')
  mmtarfilter "${filter[@]}" <"${tar%.tar}.full.tar" >"$tar"
  rm -f "${tar%.tar}.full.tar"
}

# --- build ---------------------------------------------------------------------

build_debian_image() {
  local name=$1 work=$2
  load_recipe "$name"
  rootfs_tarball "$name" "$work/rootfs.tar"
  local version=${VERSION:-$(cat "$out/work/$name.version" 2>/dev/null || true)}
  local c
  c=$(bh from --quiet scratch)
  bh add --quiet "$c" "$work/rootfs.tar" / >/dev/null
  local labels=(
    --label "org.opencontainers.image.title=${NAMES[0]%%:*}"
    --label "org.opencontainers.image.description=$DESCRIPTION"
    --label "org.opencontainers.image.source=https://github.com/tessera-dev/tessera"
    --label "org.opencontainers.image.base.name=debian:bookworm"
  )
  [ -n "$version" ] && labels+=(--label "org.opencontainers.image.version=$version")
  bh config "${labels[@]}" "${CONFIG[@]}" "$c"
  bh commit --quiet --rm "$c" "${NAMES[0]}" >/dev/null
}

# Host-built binaries, stripped, in a build context for the Dockerfile's
# `prebuilt` stage.
prepare_tessera_context() {
  local profile=${TESSERA_IMAGE_PROFILE:-debug} flags=() ctx=$out/context/tessera
  case $profile in
    debug) ;;
    release) flags=(--release) ;;
    *) die "TESSERA_IMAGE_PROFILE must be debug or release, not '$profile'" ;;
  esac
  need cargo "cargo (rustup)"
  need strip binutils
  log "tessera: cargo build --locked --bins ${flags[*]} (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  local json=$out/work/cargo.json start
  start=$(date +%s)
  (cd "$root" && nice cargo build --locked --bins "${flags[@]}" --message-format=json-render-diagnostics >"$json") ||
    die "tessera: cargo build failed"
  rm -rf "$ctx"
  mkdir -p "$ctx/bin"
  local exe n=0
  while read -r exe; do
    strip --strip-all -o "$ctx/bin/$(basename "$exe")" "$exe"
    n=$((n + 1))
  done < <(grep -o '"executable":"[^"]*"' "$json" | sed 's/"executable":"\(.*\)"/\1/' | LC_ALL=C sort -u)
  [ $n -gt 0 ] || die "tessera: cargo build reported no binaries"
  log "tessera: $n binaries built and stripped in $(($(date +%s) - start))s"
}

build_dockerfile_image() {
  local name=$1 work=$2 base
  load_recipe "$name"
  # DEPENDS: the runtime base, built by its own recipe.
  base=${DEPENDS[0]}
  ensure_in_storage "$base"
  base=${NAMES[0]}
  load_recipe "$name"
  local tags=() n
  for n in "${NAMES[@]}"; do tags+=(-t "$n"); done
  bh bud --pull=never --layers=false --build-arg BINARIES=prebuilt \
    --build-arg RUNTIME_IMAGE="$base" --build-arg VERSION="$VERSION" \
    "${tags[@]}" -f "$root/Dockerfile" "$out/context/$name"
  # buildah keeps the working container of a stage another stage is built
  # FROM (`binaries`), and with it the `prebuilt` stage's image: neither is
  # needed any more. Builds hold the lock, so no other container exists.
  bh rm --all >/dev/null 2>&1 || true
  bh rmi --prune >/dev/null 2>&1 || true
}

# `__build NAME WORK`: the image in buildah's storage, then its archive.
build_image() {
  local name=$1 work=$2 archive
  load_recipe "$name"
  archive=$(archive_of "$name")
  if [ "$KIND" = dockerfile ]; then
    build_dockerfile_image "$name" "$work"
  else
    build_debian_image "$name" "$work"
  fi
  load_recipe "$name"
  rm -f "$archive.tmp"
  bh push --quiet "${NAMES[0]}" "oci-archive:$archive.tmp:${NAMES[0]}"
}

build_one() {
  local name=$1
  load_recipe "$name"
  local archive hash work logf start
  archive=$(archive_of "$name")
  prepare
  if [ "$KIND" = dockerfile ]; then prepare_tessera_context; fi
  hash=$(recipe_hash "$name")
  load_recipe "$name"
  if [ -z "${TESSERA_IMAGES_FORCE:-}" ] && [ -f "$archive" ] && [ "$(cat "$out/$name.hash" 2>/dev/null)" = "$hash" ]; then
    log "$name: up to date (${NAMES[*]})"
    return 0
  fi
  work=$out/work/$name
  logf=$out/logs/$name.log
  rm -rf "$work"
  mkdir -p "$work" "$out/logs"
  start=$(date +%s)
  log "$name: building ${NAMES[*]} (log: $logf)"
  local rc=0
  # A process of its own, so that set -e holds in every step.
  TESSERA_BUILDAH_DRIVER=$driver "$self" __build "$name" "$work" >"$logf" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then
    echo "images: error: building $name (${NAMES[*]}) failed; the end of $logf:" >&2
    tail -n 40 "$logf" | sed 's/^/    /' >&2
    exit 1
  fi
  mv -f "$archive.tmp" "$archive"
  printf '%s\n' "${NAMES[@]}" >"$out/$name.names"
  bh inspect --type image --format '{{.FromImageID}}' "${NAMES[0]}" >"$out/$name.id"
  echo "$hash" >"$out/$name.hash"
  rm -rf "$work" "$out/work/$name.version"
  # Only the base stays in buildah's storage: the Tessera image is built on it.
  if [ "$name" != base ]; then
    local n
    for n in "${NAMES[@]}"; do bh rmi "$n" >/dev/null 2>&1 || true; done
  fi
  log "$name: built in $(($(date +%s) - start))s, $(du -h "$archive" | cut -f1) $archive"
}

cmd_build() {
  need_root
  need mmdebstrap mmdebstrap
  need buildah buildah
  need dpkg-deb dpkg
  local names=("$@") n d
  [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
  # What a named image is built on is built (or found up to date) first.
  for n in "${names[@]}"; do
    load_recipe "$n"
    for d in "${DEPENDS[@]}"; do
      [[ " ${names[*]} " == *" $d "* ]] || names+=("$d")
    done
  done
  need mmtarfilter mmdebstrap
  mkdir -p "$out/work" "$out/debs" "$out/logs"
  exec 9>"$out/.lock"
  flock -n 9 || { log "waiting for another hack/images.sh build"; flock 9; }
  pick_driver
  local total_start i
  total_start=$(date +%s)
  # Build in dependency order whatever order they were named in.
  for i in "${ALL[@]}"; do
    for n in "${names[@]}"; do
      [ "$n" = "$i" ] && build_one "$n"
    done
  done
  # Packages no longer in any image's apt lists are not worth keeping.
  find "$out/debs" -name '*.deb' -mtime +30 -delete 2>/dev/null || true
  log "done in $(($(date +%s) - total_start))s"
}

# --- load ------------------------------------------------------------------

manifest_digest() {
  tar -xOf "$1" index.json | grep -o '"digest":"sha256:[0-9a-f]*"' | head -1 | cut -d'"' -f4
}

cmd_load() {
  local address=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock} snapshotter="" names=()
  while [ $# -gt 0 ]; do
    case $1 in
      --address) address=${2:?--address needs a socket path}; shift 2 ;;
      --address=*) address=${1#*=}; shift ;;
      --snapshotter) snapshotter=${2:?--snapshotter needs a name}; shift 2 ;;
      --snapshotter=*) snapshotter=${1#*=}; shift ;;
      -*) die "load: unknown option $1" ;;
      *) names+=("$1"); shift ;;
    esac
  done
  need ctr containerd
  [ -S "$address" ] || die "no containerd socket at $address (start containerd, or pass --address)"
  [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
  local ctr=(ctr --address "$address" --namespace k8s.io) n img archive want have primary
  "${ctr[@]}" version >/dev/null || die "containerd at $address does not answer"
  for n in "${names[@]}"; do
    load_recipe "$n"
    archive=$(archive_of "$n")
    [ -f "$archive" ] || die "$n is not built: run hack/images.sh build $n"
    want=$(manifest_digest "$archive")
    primary=${NAMES[0]}
    have=$("${ctr[@]}" images ls "name==$primary" 2>/dev/null | awk 'NR > 1 { print $3 }')
    if [ "$have" = "$want" ]; then
      log "$n: $primary already loaded ($want)"
    else
      log "$n: importing $archive as $primary"
      "${ctr[@]}" images import ${snapshotter:+--snapshotter "$snapshotter"} \
        --base-name "${primary%:*}" "$archive" >/dev/null ||
        die "$n: ctr images import $archive failed"
      have=$("${ctr[@]}" images ls "name==$primary" 2>/dev/null | awk 'NR > 1 { print $3 }')
      [ "$have" = "$want" ] || die "$n: after the import containerd has $primary at '${have:-nothing}', not $want"
    fi
    for img in "${NAMES[@]:1}"; do
      if [ "$("${ctr[@]}" images ls "name==$img" 2>/dev/null | awk 'NR > 1 { print $3 }')" != "$want" ]; then
        "${ctr[@]}" images tag --force "$primary" "$img" >/dev/null
        log "$n: tagged $img"
      fi
    done
  done
}

cmd_list() {
  local n archive
  for n in "${ALL[@]}"; do
    load_recipe "$n"
    archive=$(archive_of "$n")
    if [ -f "$archive" ]; then
      printf '%-10s %-42s %s\n' "$n" "${NAMES[*]}" "$archive"
    else
      printf '%-10s %-42s %s\n' "$n" "${NAMES[*]}" "(not built)"
    fi
  done
}

# The operator's --engine-image value for the local engine images.
cmd_engine_map() {
  local e out_=()
  for e in "${ENGINES[@]}"; do
    load_recipe "$e"
    out_+=("$e=${NAMES[0]}")
  done
  (IFS=,; echo "${out_[*]}")
}

# --- check -----------------------------------------------------------------

# For the recipes' check functions: run a command in the image as a user,
# with loopback-only networking.
in_image() {
  local user=$1
  shift
  bh run --user "$user" --network "ns:$netns" "$container" -- "$@"
}

# The checks' network: a namespace of their own with only a loopback, that
# every container of a check joins.
netns_up() {
  need ip iproute2
  netns=/run/netns/tessera-images-$$
  ip netns add "tessera-images-$$"
  ip -n "tessera-images-$$" link set lo up
  trap netns_down EXIT
}

netns_down() {
  ip netns delete "tessera-images-$$" 2>/dev/null || true
}

# A path of the image's root filesystem, read from the host.
image_path() {
  echo "$rootfs_mnt$1"
}

# A field of the image configuration, as a Go template of buildah inspect.
image_config() {
  bh inspect --type container --format "$1" "$container"
}

# Fails unless the output of the command has the pattern.
expect() {
  local pattern=$1 output
  shift
  output=$("$@" 2>&1) || { echo "$output" >&2; die "$name: '$*' failed"; }
  grep -Eq -- "$pattern" <<<"$output" || { echo "$output" >&2; die "$name: '$*' printed no '$pattern'"; }
  local what="$*"
  what=${what%%$'\n'*}
  [ ${#what} -le 90 ] || what="${what:0:87}..."
  echo "    ok: $what => $(grep -Em1 -- "$pattern" <<<"$output" | cut -c1-100)" >&2
}

cmd_check() {
  need_root
  need buildah buildah
  local names=("$@") n
  [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
  mkdir -p "$out/work"
  exec 9>"$out/.lock"
  flock -n 9 || { log "waiting for a hack/images.sh build to end"; flock 9; }
  pick_driver
  netns_up
  for n in "${names[@]}"; do
    ensure_in_storage "$n"
    load_recipe "$n"
    log "$n: checking ${NAMES[0]}"
    container=$(bh from --quiet --pull=never "${NAMES[0]}")
    rootfs_mnt=$(bh mount "$container")
    local rc=0
    (check) || rc=$?
    bh umount "$container" >/dev/null 2>&1 || true
    bh rm "$container" >/dev/null
    [ "$n" = base ] || bh rmi "${NAMES[@]}" >/dev/null 2>&1 || true
    [ $rc -eq 0 ] || die "$n: contract check failed"
  done
  log "every contract check passed"
}

# Every mount that buildah (its overlay storage, its containers) and
# mmdebstrap make goes into a mount namespace of our own, and so goes away
# with it: nothing is left mounted on the host, however the run ends.
case ${1:-} in
  build | check)
    if [ -z "${TESSERA_IMAGES_MOUNT_NS:-}" ] && [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null 2>&1; then
      export TESSERA_IMAGES_MOUNT_NS=1
      exec unshare --mount --propagation private "$self" "$@"
    fi
    ;;
esac

case ${1:-help} in
  build) shift; cmd_build "$@" ;;
  load) shift; cmd_load "$@" ;;
  list) shift; cmd_list ;;
  engine-map) shift; cmd_engine_map ;;
  check) shift; cmd_check "$@" ;;
  __hook) shift; hook "$@" ;;
  __build) shift; pick_driver; build_image "$@" ;;
  help | -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
