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

# Every test: unit, topology snapshots, and labs on the real Docker engine.
test: images
    cargo test --release --workspace --no-fail-fast

# Benchmarks (figures go in the README): lab up to green, no-op image
# build; the apiserver's throughput, watch latency, LIST and memory;
# controllers, scheduler, and kube-proxy's iptables syncs.
bench: images
    cargo bench -p kubelab-scenarios --bench lab_up
    cargo bench -p kubelab-scenarios --bench apiserver
    cargo bench -p kubelab-scenarios --bench controllers
    cargo bench -p kubelab-scenarios --bench scheduler
    cargo bench -p kubelab-scenarios --bench kube_proxy

# Take every lab down.
down: build
    {{lab_bin}} down --all
