#!/usr/bin/env bash
# Replicas benchmark: three collectors (release build) sharing one MariaDB database and linked
# by a real NATS server, against simulated agents spread over them (e2e/src/bin/fleet.rs), with
# one WebSocket client per replica watching the whole fleet's stats: delivery from agents on
# its own replica beside delivery from agents on the others is what NATS adds.
#   bench/replicas.sh [fleet args…]   e.g. bench/replicas.sh --agents 3000 --interval 30s --duration 120s
# Run it on an otherwise idle machine; everything shares it. FLEET_BIN_DIR: see fleet-setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/fleet-setup.sh

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  mariadb --socket=$socket --user=root -e "DROP DATABASE IF EXISTS $database" || true
  rm -rf "$work"
}
trap cleanup EXIT

nats-server --addr 127.0.0.1 --port 24222 >"$work/nats.log" 2>&1 &
pids+=($!)
password="bench-$$-$RANDOM-password"
"$bin/dockermon-collector" pki init --data-dir "$work/r0" --san localhost >/dev/null
for i in 0 1 2; do
  if ((i > 0)); then
    # Replicas share the CA and the token-signing secret the first one made.
    mkdir -p "$work/r$i"
    cp -r "$work/r0/pki" "$work/r0/secrets" "$work/r$i/"
  fi
  "$bin/dockermon-collector" serve --data-dir "$work/r$i" --database-url "$server/$database" \
    --nats-url nats://127.0.0.1:24222 --admin-password "$password" \
    --agent-listen "127.0.0.1:2381$i" --health-listen "127.0.0.1:2981$i" \
    --api-listen "127.0.0.1:2371$i" --ws-listen "127.0.0.1:2361$i" --log warn \
    >"$work/collector-$i.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:2981$i/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
done

token=$(curl -fsS -X POST http://127.0.0.1:23710/api/v1/auth/login -H 'content-type: application/json' \
  -d "{\"email\":\"admin@localhost\",\"password\":\"$password\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

"$bin/fleet" --collector 127.0.0.1:23810,127.0.0.1:23811,127.0.0.1:23812 --pki-dir "$work/r0/pki" \
  --watch 127.0.0.1:23610,127.0.0.1:23611,127.0.0.1:23612 --token "$token" \
  --collector-pid "${pids[1]},${pids[2]},${pids[3]}" "$@"
for i in 0 1 2; do
  grep -E "WARN|ERROR" "$work/collector-$i.log" | grep -v "admin-password\|without credentials" | tail -3 || true
done
