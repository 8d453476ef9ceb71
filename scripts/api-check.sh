#!/usr/bin/env bash
# Runs schemathesis against a real collector's OpenAPI document: generated requests, valid
# and invalid, signed in as an admin; fails on any 5xx or any answer that does not match the
# document. The collector runs on embedded SQLite in a temporary directory.
#   scripts/api-check.sh [extra schemathesis args…]
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/py
if [[ ! -x $venv/bin/schemathesis ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
# The same build as the tests (features unified across the workspace), so nothing is rebuilt.
cargo test --no-run --quiet --locked --workspace

work=$(mktemp -d)
collector_pid=
cleanup() {
  [[ -n "$collector_pid" ]] && kill "$collector_pid" 2>/dev/null && wait "$collector_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api=127.0.0.1:$(port)
password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
target/debug/dockermon-collector pki init --data-dir "$work" --san localhost >/dev/null
DOCKERMON_ADMIN_PASSWORD=$password target/debug/dockermon-collector serve --data-dir "$work" \
  --api-listen "$api" --ws-listen "127.0.0.1:$(port)" --agent-listen "127.0.0.1:$(port)" --health-listen "127.0.0.1:$(port)" \
  --log warn >"$work/collector.log" 2>&1 &
collector_pid=$!
for _ in $(seq 1 120); do
  curl -fsS "http://$api/api/v1/openapi.json" >/dev/null 2>&1 && break
  sleep 0.5
done

token=$(curl -fsS "http://$api/api/v1/auth/login" -H 'Content-Type: application/json' \
  -d "{\"email\":\"admin@localhost\",\"password\":\"$password\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# Logging out or changing the password would end the session the run signs in with.
status=0
"$venv/bin/schemathesis" run "http://$api/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path /api/v1/auth/logout --exclude-path /api/v1/me/password \
  --max-examples 40 --seed 1 --no-color --report-dir "$work/report" "$@" || status=$?
if grep -E "ERROR|panicked" "$work/collector.log"; then
  echo "api-check: the collector logged errors (above)" >&2
  status=1
fi
exit $status
