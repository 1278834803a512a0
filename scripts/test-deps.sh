#!/usr/bin/env bash
# What the tests need beyond the Rust toolchain, installed once:
# - the wasm32-wasip2 target (host/build.rs builds the plugins for it);
# - Debian's chromium and chromium-driver (the console's browser test);
# - the tansu Kafka-protocol broker (the distributed mode's tests), built
#   into a cache outside the clone, where the tests look for it.
set -euo pipefail

rustup target add wasm32-wasip2

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver
fi

TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/airlift/tools"
if [ ! -x "$TOOLS/bin/tansu" ]; then
    # About 13 minutes, once.
    env -u CARGO_TARGET_DIR cargo install tansu --version 0.6.0 --features dynostore --locked --root "$TOOLS"
fi
