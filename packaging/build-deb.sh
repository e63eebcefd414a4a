#!/usr/bin/env bash
# Builds the Debian package: target/debian/deskhook_<version>-1_<arch>.deb (needs cargo-deb:
# `cargo install cargo-deb --locked`). The man pages and completions are generated from the
# binary's own command line first.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf target/assets
# A plain build: its speed does not matter, and an optimised one costs another whole-program link.
cargo run --quiet --example package_assets -- target/assets >/dev/null
gzip -9n target/assets/*.1
cargo deb --strip "$@"
