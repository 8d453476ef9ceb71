#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30): the bounded run CI does. Needs
# cargo-fuzz and a nightly toolchain (libFuzzer). Findings stop the run and are kept under
# fuzz/artifacts/<target>/; the corpus grows under fuzz/corpus/.
#   scripts/fuzz.sh [SECONDS] [SANITIZER]
# SANITIZER is cargo fuzz's: `address` (the default) or `none` (coverage only; see
# docs/SECURITY.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
sanitizer=${2:-address}
for target in agent_frame ws_client_message enrollment config_file; do
  echo "--- fuzz $target (${seconds}s, sanitizer: $sanitizer)"
  (cd fuzz && cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096)
done
