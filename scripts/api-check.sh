#!/usr/bin/env bash
# Runs schemathesis against a real collector's OpenAPI document: generated requests, valid
# and invalid, signed in as an admin; fails on any 5xx or any answer that does not match the
# document. The collector runs as `standalone` (embedded SQLite, a real agent for the local
# Docker engine) in a temporary directory, watching one container of the test image, so the
# operations on a host or a container answer real data, not only 404s.
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
bash scripts/test-image.sh >/dev/null

work=$(mktemp -d)
container=dockermon-api-check-$$
collector_pid=
cleanup() {
  [[ -n "$collector_pid" ]] && kill "$collector_pid" 2>/dev/null && wait "$collector_pid" 2>/dev/null || true
  docker rm -f "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api=127.0.0.1:$(port)
password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
docker run -d --name "$container" dockermon-test/busybox:latest sleep 3600 >/dev/null
(cd "$work" && DOCKERMON_ADMIN_PASSWORD=$password exec "$OLDPWD/target/debug/dockermon-collector" standalone \
  --api-listen "$api" --ws-listen "127.0.0.1:$(port)" --agent-listen "127.0.0.1:$(port)" \
  --health-listen "127.0.0.1:$(port)" --log warn >"$work/collector.log" 2>&1) &
collector_pid=$!

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)" 2>/dev/null; }
token=
for _ in $(seq 1 120); do
  token=$(curl -fsS "http://$api/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"admin@localhost\",\"password\":\"$password\"}" 2>/dev/null | json '["access_token"]') && break
  sleep 0.5
done
ids=
for _ in $(seq 1 120); do
  ids=$(curl -fsS "http://$api/api/v1/containers?name=$container" -H "Authorization: Bearer $token" |
    python3 -c 'import json,sys; i=json.load(sys.stdin)["items"]; print(i[0]["id"], i[0]["host_id"]) if i else sys.exit(1)' 2>/dev/null) && break
  sleep 0.5
done
[[ -n "$ids" ]] || { echo "api-check: the local agent never reported $container" >&2; cat "$work/collector.log" >&2; exit 1; }
read -r container_id host_id <<<"$ids"
cat >"$work/schemathesis.toml" <<TOML
[[operations]]
include-path-regex = "^/api/v1/containers/"
parameters = { id = $container_id }

[[operations]]
include-path-regex = "^/api/v1/hosts/"
parameters = { id = $host_id }
TOML

# Left out: logging out or changing the password would end the session the run signs in
# with; deleting the host or acting on containers would act on the real engine (both are
# covered by the test suite).
status=0
"$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run \
  "http://$api/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path /api/v1/auth/logout --exclude-path /api/v1/me/password \
  --exclude-path '/api/v1/containers/{id}/actions/{action}' --exclude-method DELETE \
  --max-examples 40 --seed 1 --no-color --report-dir "$work/report" "$@" || status=$?
if grep -E "ERROR|panicked" "$work/collector.log"; then
  echo "api-check: the collector logged errors (above)" >&2
  status=1
fi
exit $status
