#!/usr/bin/env bash
# Builds the busybox that pod images (busybox, labhost, dns) are made around,
# unless a build of the same inputs is cached, and prints the binary's path.
#
# Why not the build machine's /bin/busybox (Debian's busybox-static 1.35)?
# Debian configures it without FEATURE_WGET_TIMEOUT, and `wget -T 2` then
# crashes (SIGSEGV, exit 139); its nc lacks NC_110_COMPAT, so `nc -z` is an
# invalid option. Upstream's busybox image is `make defconfig` plus a static
# link, which has both; so is this build.
#
# Source: Debian bookworm's busybox source package (upstream 1.35.0 plus
# Debian's patches, CVE fixes among them), pinned by version and SHA-256, so
# that what is built never changes under us. Configuration: defconfig,
# CONFIG_STATIC=y, and CONFIG_TC off (tc does not compile against newer
# kernel headers; no pod needs it).
#
# Cache: <state>/kubelab/cache/busybox-<key>/busybox, where <state> is
# $KUBELAB_CACHE_DIR if set, else $XDG_STATE_HOME (if absolute), else
# ~/.local/state, and <key> is a hash of this script: every input (source
# version and hashes, configuration) is written here, so editing any of them
# makes a new key. It lives outside Docker and outside target/, so neither
# CI's removal of all images nor `cargo clean` throws it away.
#
# Needs curl, dpkg-source (dpkg-dev), make, gcc and the static libc
# (libc6-dev): scripts/setup.sh installs build-essential and curl. Builds
# with `nice -n 19 make -j2` (one to two minutes on two cores).
set -euo pipefail

mirror=${KUBELAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
pool="$mirror/pool/main/b/busybox"
# name sha256
sources=(
  "busybox_1.35.0-4+deb12u1.dsc 9c01fe128b0eeded371c70e37d474fdb5055f71b5d0a778db44c6b0c62d3a7fa"
  "busybox_1.35.0.orig.tar.bz2 faeeb244c35a348a334f4a59e44626ee870fb07b6884d68c10ae8bc19f83a694"
  "busybox_1.35.0-4+deb12u1.debian.tar.xz 1cacbe095ef4880ea7879933c8e3c5075d1527cd6fbcb626a9b41e5daefd1a46"
)
# Settings over defconfig (NAME=y, or NAME=n for "is not set").
settings=(CONFIG_STATIC=y CONFIG_TC=n)
# What pods and tests rely on; the build fails if defconfig ever drops one.
required=(CONFIG_WGET CONFIG_FEATURE_WGET_TIMEOUT CONFIG_NC CONFIG_NC_EXTRA CONFIG_NC_110_COMPAT
  CONFIG_NSLOOKUP CONFIG_FEATURE_NSLOOKUP_BIG CONFIG_STATIC)

script=$(readlink -f "${BASH_SOURCE[0]}")
key=$(sha256sum "$script" | cut -c1-16)
if [ -n "${KUBELAB_CACHE_DIR:-}" ]; then
  cache_root=$KUBELAB_CACHE_DIR
elif [[ "${XDG_STATE_HOME:-}" == /* ]]; then
  cache_root=$XDG_STATE_HOME/kubelab/cache
else
  cache_root=${HOME:?set HOME, XDG_STATE_HOME or KUBELAB_CACHE_DIR}/.local/state/kubelab/cache
fi
dir="$cache_root/busybox-$key"
if [ -x "$dir/busybox" ]; then
  echo "$dir/busybox"
  exit 0
fi

for tool in curl dpkg-source make gcc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build-busybox: $tool is missing; run scripts/setup.sh (as root it installs build-essential and curl)" >&2
    exit 1
  fi
done

mkdir -p "$cache_root"
# One build at a time per key: a second caller waits, then finds it cached.
exec 9>"$cache_root/busybox-$key.lock"
flock 9
if [ -x "$dir/busybox" ]; then
  echo "$dir/busybox"
  exit 0
fi

work=$(mktemp -d "$cache_root/busybox-$key.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-busybox: building busybox from Debian's source package into $dir (a minute or two)" >&2
started=$SECONDS
for entry in "${sources[@]}"; do
  read -r name sum <<<"$entry"
  curl -fsSL --retry 3 -o "$work/$name" "$pool/${name//+/%2B}"
  if [ "$(sha256sum "$work/$name" | cut -d' ' -f1)" != "$sum" ]; then
    echo "build-busybox: $pool/$name does not have the SHA-256 this script pins ($sum)" >&2
    exit 1
  fi
done
dsc=${sources[0]%% *}
# The .dsc is pinned above and names the tarballs' checksums, which
# dpkg-source checks; it also applies Debian's patches.
(cd "$work" && dpkg-source --no-check -x "$dsc" src >/dev/null)

cd "$work/src"
make defconfig >/dev/null
for setting in "${settings[@]}"; do
  name=${setting%%=*}
  sed -i -e "/^$name=/d" -e "/^# $name is not set/d" .config
  case ${setting#*=} in
    n) echo "# $name is not set" >>.config ;;
    *) echo "$setting" >>.config ;;
  esac
done
{ yes '' || true; } | make oldconfig >/dev/null
for name in "${required[@]}"; do
  if ! grep -qx "$name=y" .config; then
    echo "build-busybox: the configuration lacks $name=y" >&2
    exit 1
  fi
done
nice -n 19 make -j2 >"$work/make.log" 2>&1 || {
  tail -40 "$work/make.log" >&2
  echo "build-busybox: make failed (the whole log was $work/make.log)" >&2
  exit 1
}
# ldd fails on a static binary ("not a dynamic executable").
if ldd busybox >/dev/null 2>&1; then
  echo "build-busybox: the binary is not statically linked" >&2
  exit 1
fi

# Into place whole, or not at all.
staged="$work/out"
mkdir "$staged"
cp busybox "$staged/busybox"
cp .config "$staged/config"
rm -rf "$dir"
mv "$staged" "$dir"
echo "build-busybox: built in $((SECONDS - started)) s" >&2
echo "$dir/busybox"
