#!/usr/bin/env bash
# Runs every test against real parts: the local Docker engine (with the locally built test
# image) and, for the collector, real databases. Usage: scripts/test.sh [nextest args…]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-image.sh

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace "$@"
else
  cargo test --workspace "$@"
fi
