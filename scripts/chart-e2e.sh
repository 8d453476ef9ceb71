#!/usr/bin/env bash
# The Helm chart's collector and agent pods, started on the local Docker engine exactly as the
# chart configures them (images, command lines, environment, mounts, users, capabilities),
# against a stand-in Kubernetes API server: no real one can run on these machines. What is
# checked and how pods map to containers: scripts/chart_e2e.py, scripts/pod_runner.py,
# scripts/kube_standin.py.
#
# The images are the ones scripts/image.sh builds, tagged `e2e`, from the dev profile's
# binaries that the test run has already built (an optimised build would add minutes to CI
# and prove nothing more about the chart's command lines). Usage: scripts/chart-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/helm.sh
bash scripts/test-image.sh
scripts/image.sh collector e2e dev
scripts/image.sh agent e2e dev
"$venv/bin/python" scripts/chart_e2e.py --helm "$helm" --chart charts/dockermon --tag e2e \
  --utility-image dockermon-test/busybox:latest
