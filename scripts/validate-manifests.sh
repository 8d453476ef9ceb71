#!/usr/bin/env bash
# Validates, offline, what Kubernetes would be given: the generated CRDs in crds/ against
# the Kubernetes API schemas of several versions (kubernetes-validate, from PyPI), and every
# example resource in examples/ and README.md against those CRDs' schemas, with unknown
# fields refused as a strict API server refuses them (scripts/validate_resources.py).
# No API server can run here, so this is as close as CI gets.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/py-validate
if [[ ! -x $venv/bin/kubernetes-validate ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'kubernetes-validate==1.34.*' 'jsonschema>=4.23,<5' 'PyYAML>=6,<7'
fi

# The oldest Kubernetes version the chart supports, a middle one, and the newest that
# kubernetes-validate carries.
newest=$("$venv/bin/python" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')
for version in 1.29.0 1.32.0 "$newest"; do
  "$venv/bin/kubernetes-validate" --strict --kubernetes-version "$version" --quiet crds/*.yaml
done
echo "validate-manifests: crds/ valid for Kubernetes 1.29.0, 1.32.0 and $newest"

"$venv/bin/python" scripts/validate_resources.py crds/dockermon.yaml examples/*.yaml README.md
