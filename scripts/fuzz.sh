#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30): the bounded run CI does. Needs
# cargo-fuzz and a nightly toolchain (libFuzzer with AddressSanitizer). Findings stop the
# run and are kept under fuzz/artifacts/<target>/; the corpus grows under fuzz/corpus/.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
for target in agent_frame ws_client_message enrollment config_file; do
  echo "--- fuzz $target (${seconds}s)"
  (cd fuzz && cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096)
done
