#!/usr/bin/env bash
# Runs every test against real parts: the local Docker engine (with the locally built test
# image) and, for the collector, real MariaDB (a private server, scripts/mariadb.sh) and SQLite. Usage: scripts/test.sh [nextest args…]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-image.sh
if [[ -z "${DOCKERMON_TEST_MYSQL_URL:-}" ]]; then
  DOCKERMON_TEST_MYSQL_URL=$(scripts/mariadb.sh start)
  export DOCKERMON_TEST_MYSQL_URL
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace "$@"
else
  cargo test --workspace "$@"
fi

# The CRDs and example resources, validated offline.
bash scripts/validate-manifests.sh

# The Helm chart: lint, render and validate every mode offline (helm from a PyPI wheel).
bash scripts/validate-chart.sh

# The chart's collector and agent pods, run on Docker as a kubelet would run them.
bash scripts/chart-e2e.sh

# The API against its own OpenAPI document (schemathesis, in a venv under target/).
bash scripts/api-check.sh
