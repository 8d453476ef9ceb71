#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30). Needs cargo-fuzz and a nightly
# toolchain (libFuzzer). Findings stop the run and are kept under fuzz/artifacts/<target>/;
# the corpus grows under fuzz/corpus/.
#   scripts/fuzz.sh [--dev] [--sanitizer address|none] [SECONDS]
# --dev builds without optimisation, with debug assertions and overflow checks in every
# crate: a third of the optimised build's time, a quarter to a tenth of its executions per
# second. CI's short run uses it; long runs by hand should not. --sanitizer none fuzzes with
# coverage only (docs/SECURITY.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/.."
build=(--release)
sanitizer=address
seconds=30
while [[ $# -gt 0 ]]; do
  case $1 in
    --dev) build=(--dev); shift ;;
    --sanitizer) sanitizer=$2; shift 2 ;;
    *) seconds=$1; shift ;;
  esac
done
for target in agent_frame ws_client_message enrollment config_file; do
  echo "--- fuzz $target (${seconds}s, ${build[0]#--} build, sanitizer: $sanitizer)"
  (cd fuzz && cargo +nightly fuzz run "${build[@]}" --sanitizer "$sanitizer" "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096)
done
