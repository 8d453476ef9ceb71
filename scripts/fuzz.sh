#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30). Needs cargo-fuzz and a nightly
# toolchain (libFuzzer). Findings stop the run and are kept under fuzz/artifacts/<target>/;
# the corpus grows under fuzz/corpus/.
#   scripts/fuzz.sh [--dev] [--sanitizer address|none] [SECONDS]
# Both builds keep debug assertions and overflow checks in every crate. The default one is
# optimised; --dev is not: a third of the compile time, a quarter to a tenth of the
# executions per second. CI's short run uses --dev; long runs by hand should not.
# --sanitizer none fuzzes with coverage only (docs/SECURITY.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: scripts/fuzz.sh [--dev] [--sanitizer address|none] [SECONDS]" >&2; exit 2; }
build=optimised
sanitizer=address
seconds=30
while [[ $# -gt 0 ]]; do
  case $1 in
    --dev) build=dev; shift ;;
    --sanitizer)
      [[ ${2:-} =~ ^(address|none)$ ]] || usage
      sanitizer=$2; shift 2 ;;
    *)
      [[ $1 =~ ^[0-9]+$ ]] || usage
      seconds=$1; shift ;;
  esac
done
# Without -O, cargo fuzz builds optimised with debug assertions; -O would leave them out.
flags=(--sanitizer "$sanitizer")
[[ $build == optimised ]] || flags+=(--dev)
for target in agent_frame ws_client_message enrollment config_file; do
  echo "--- fuzz $target (${seconds}s, $build build, sanitizer: $sanitizer)"
  (cd fuzz && cargo +nightly fuzz run "${flags[@]}" "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096)
done
