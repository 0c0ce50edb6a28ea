# kubelab's commands. `just lab up 3-node` does all set-up and brings a lab up;
# `just test` runs every test. Everything builds once, in the release profile.

set shell := ["bash", "-euo", "pipefail", "-c"]

lab_bin := "target/release/lab"

# List the recipes.
default:
    @just --list

# Check and install what the build needs (debootstrap, ...).
setup:
    @scripts/setup.sh

# Build the workspace (release: one profile serves images, tests and benches).
build: setup
    cargo build --release --workspace

# Run the lab CLI: just lab up 3-node, just lab status, just lab down.
lab *ARGS: build
    {{lab_bin}} {{ARGS}}

# Build every image that is missing or stale.
images: build
    {{lab_bin}} images build

# The inner loop, without Docker: format, lints, unit tests and the
# in-process tests (apiserver over etcd on loopback, controllers, kubectl);
# everything but the tests that need labs or the Docker engine.
check: setup
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --release -- -D warnings
    scripts/run-tests --skip labs --skip lab

# Every test: unit, in-process, and labs on the real Docker engine; each
# test binary's time is printed at the end. Cargo commands always name the
# whole workspace (--workspace), so features, and so builds, are shared.
test: images
    scripts/run-tests

# Benchmarks (figures go in the README): lab up to green, no-op image
# build; the apiserver's throughput, watch latency, LIST and memory;
# controllers, scheduler, kube-proxy's iptables syncs, cluster DNS, and the
# kubelet (pod startup at 30 and 300 pods, port-forward against cp, memory).
# All by default, or some by name: just bench dns kube_proxy (--list lists them).
bench *NAMES: images
    cargo bench --workspace --bench benches -- {{NAMES}}

# Take every lab down.
down: build
    {{lab_bin}} down --all
