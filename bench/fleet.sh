#!/usr/bin/env bash
# Fleet benchmark: one collector (release build, MariaDB) against simulated agents that
# speak the real protocol with real certificates (e2e/src/bin/fleet.rs).
#   bench/fleet.sh [fleet args…]   e.g. bench/fleet.sh --agents 1000 --interval 30s --duration 180s
# Run it on an otherwise idle machine; the generator shares the machine with the collector.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/fleet-setup.sh

work=$(mktemp -d)
collector_pid=
cleanup() {
  [[ -n "$collector_pid" ]] && kill "$collector_pid" 2>/dev/null && wait "$collector_pid" 2>/dev/null || true
  mariadb --socket=$socket --user=root -e "DROP DATABASE IF EXISTS $database" || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/dockermon-collector" pki init --data-dir "$work" --san localhost >/dev/null
"$bin/dockermon-collector" serve --data-dir "$work" --database-url "$server/$database" \
  --agent-listen 127.0.0.1:23812 --health-listen 127.0.0.1:29810 \
  --api-listen 127.0.0.1:23810 --ws-listen 127.0.0.1:23811 --log warn >"$work/collector.log" 2>&1 &
collector_pid=$!
for _ in $(seq 1 120); do
  curl -fsS http://127.0.0.1:29810/readyz >/dev/null 2>&1 && break
  sleep 0.5
done

"$bin/fleet" --collector 127.0.0.1:23812 --pki-dir "$work/pki" --collector-pid "$collector_pid" "$@"
grep -E "WARN|ERROR" "$work/collector.log" | tail -5 || true
