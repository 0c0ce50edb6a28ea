#!/usr/bin/env bash
# Checks what building and running kubelab needs beyond Linux, Docker, Rust
# and just, and installs it where it can (root with apt); otherwise it says
# what to install. Run by `just setup`, and so by `just lab` and `just test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
need() { # need COMMAND DEBIAN-PACKAGE WHAT-FOR
  command -v "$1" >/dev/null 2>&1 || missing+=("$2:$1:$3")
}
need debootstrap debootstrap "building the Debian base image"
need tar tar "packing the base image"
need busybox busybox-static "the lab crate's load_image test (its stand-in node is built around /bin/busybox)"
# The pod images' busybox is built from source (scripts/build-busybox.sh,
# below), not taken from busybox-static: Debian's build has a crashing
# `wget -T` and an `nc` without `-z`. Building it needs a C toolchain,
# dpkg-source and the static libc (build-essential), and curl to fetch the
# source package.
need make build-essential "building busybox for the pod images"
need gcc build-essential "building busybox for the pod images"
need dpkg-source build-essential "unpacking Debian's busybox source package"
need protoc protobuf-compiler "building etcd-client (the apiserver's etcd API)"
need etcd etcd-server "the apiserver tests, which run a real etcd on loopback"
need curl curl "the apiserver tests"
need iptables-restore iptables "the kube-proxy benchmark (iptables mode), in a network namespace of its own"
need nft nftables "the kube-proxy benchmark (nftables mode), in a network namespace of its own"

if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  echo "setup: cannot reach the Docker engine. Start it (sudo systemctl start docker, or sudo dockerd &)," >&2
  echo "       and check that DOCKER_HOST, if set, names it." >&2
  exit 1
fi

# The Python client the tests drive, from PyPI.
if ! python3 -c 'import kubernetes' >/dev/null 2>&1; then
  echo "setup: installing the Python kubernetes client (pip) for the tests" >&2
  python3 -m pip install --quiet kubernetes >/dev/null 2>&1 \
    || echo "setup: could not install it; run: python3 -m pip install kubernetes" >&2
fi

command -v kubectl >/dev/null 2>&1 || echo "setup: kubectl is not installed; the tests drive the real kubectl (https://kubernetes.io/docs/tasks/tools/)" >&2

# Optional: mold links test binaries several times faster than GNU ld
# (scripts/linker uses it when present). Installed when we can; never required.
if ! command -v mold >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing mold (faster linking)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mold >/dev/null; } \
      || echo "setup: could not install mold; builds use the system linker" >&2
  else
    echo "setup: mold is not installed; builds link with the system linker (sudo apt-get install mold links faster)" >&2
  fi
fi

# The pod images' busybox: built once (a minute or two) and cached under the
# state folder, keyed by a hash of the script (its source and configuration);
# afterwards this is instant. The lab also runs the script when it builds
# the pod images, so a missed step here costs only time.
build_busybox() {
  local path
  path=$(bash scripts/build-busybox.sh)
  echo "setup: busybox for the pod images: ${path}" >&2
}

if [ ${#missing[@]} -eq 0 ]; then
  build_busybox
  exit 0
fi
packages=$(printf '%s\n' "${missing[@]}" | cut -d: -f1 | sort -u | tr '\n' ' ')
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${packages}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${packages} >/dev/null
  build_busybox
  exit 0
fi
echo "setup: kubelab needs these and cannot install them itself (not root, or no apt):" >&2
for m in "${missing[@]}"; do
  IFS=: read -r pkg cmd why <<<"$m"
  echo "  ${cmd} (Debian package ${pkg}), for ${why}" >&2
done
echo "On Debian or Ubuntu: sudo apt-get install ${packages}" >&2
exit 1
