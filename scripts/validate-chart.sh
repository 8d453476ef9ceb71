#!/usr/bin/env bash
# Validates the Helm chart charts/dockermon offline, as CI runs it:
# - its CRDs are crds/dockermon.yaml byte for byte, and its appVersion is the workspace's;
# - `helm lint --strict` and `helm template` of each charts/dockermon/ci/*.yaml;
# - every rendered object against the Kubernetes API schemas of several versions, strictly
#   (kubernetes-validate), and what no schema says (selectors, ports, Secrets, bindings,
#   names, labels, each container's DOCKERMON_* variables against its binary's sources, the
#   roles the collector needs for the objects it creates): scripts/validate_chart.py;
# - values that must be refused are: SQLite with more than one replica, an unknown or
#   removed value, missing Secret names in the existing-Secret modes, a malformed name for
#   the collector's certificate.
# No API server can run here, and nothing is pulled: images are only named (scripts/chart-e2e.sh
# runs the pods). helm and the venv: scripts/lib/helm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

chart=charts/dockermon
started=$SECONDS
source scripts/lib/helm.sh

# Helm installs crds/ but never generates it: the chart's copy must be the generated file.
if ! cmp -s crds/dockermon.yaml "$chart/crds/dockermon.yaml"; then
  echo "validate-chart: $chart/crds/dockermon.yaml differs from crds/dockermon.yaml;" \
    "copy it: cp crds/dockermon.yaml $chart/crds/" >&2
  exit 1
fi
# The default image tag is the appVersion; scripts/image.sh tags with the workspace version.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
app_version=$(sed -n 's/^appVersion: "\(.*\)"/\1/p' "$chart/Chart.yaml")
if [[ $version != "$app_version" ]]; then
  echo "validate-chart: $chart/Chart.yaml appVersion $app_version is not the workspace version $version" >&2
  exit 1
fi

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
render() { "$helm" template dockermon "$chart" --namespace dockermon --include-crds "$@"; }

cases=0
for values in "$chart"/ci/*.yaml; do
  "$helm" lint --strict --quiet "$chart" --namespace dockermon -f "$values" >"$rendered/lint.log" 2>&1 ||
    { cat "$rendered/lint.log" >&2; echo "validate-chart: helm lint failed for $values" >&2; exit 1; }
  render -f "$values" >"$rendered/$(basename "$values")"
  cases=$((cases + 1))
done

# With every secret from existing Secrets nothing is generated: a GitOps render is stable.
render -f "$chart/ci/existing-secrets-values.yaml" | cmp -s - "$rendered/existing-secrets-values.yaml" ||
  { echo "validate-chart: rendering ci/existing-secrets-values.yaml twice differs" >&2; exit 1; }

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion: 1.30, the first whose
# ServiceAccount tokens name their node), a middle one, and the newest that
# kubernetes-validate carries, as scripts/validate-manifests.sh does.
oldest=$(sed -n 's/^kubeVersion: ">=\([0-9.]*\)-0"/\1/p' "$chart/Chart.yaml")
newest=$("$venv/bin/python" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')
"$venv/bin/python" scripts/validate_chart.py manifests --versions "$oldest,1.32.0,$newest" \
  --crds crds/dockermon.yaml --binary collector=collector/src --binary agent=agent/src/config.rs \
  --chart "$chart" "$rendered"/*.yaml

# Values that must be refused, each for its own reason (the message names it).
refused=0
must_fail() {
  local what=$1 expected=$2
  shift 2
  if render "$@" >/dev/null 2>"$rendered/error"; then
    echo "validate-chart: accepted, but must be refused: $what" >&2
    exit 1
  fi
  if ! grep -qF -- "$expected" "$rendered/error"; then
    echo "validate-chart: refused, but not for the expected reason ($expected): $what" >&2
    cat "$rendered/error" >&2
    exit 1
  fi
  refused=$((refused + 1))
}
must_fail "sqlite with 2 replicas" "/collector/replicas" --set collector.replicas=2
must_fail "sqlite with 2 replicas, schema skipped" "needs a shared database" \
  --skip-schema-validation --set collector.replicas=2
must_fail "an unknown value" "additional properties 'colector' not allowed" --set colector.replicas=1
must_fail "an unknown collector setting" "additional properties 'retention_rwa' not allowed" \
  --set collector.settings.retention_rwa=1d
must_fail "a NATS URL of another scheme" "/collector/settings/nats_url" \
  --set collector.settings.nats_url=http://nats:4222
must_fail "an unknown agent setting (the chart decides the collector URL)" \
  "additional properties 'collector' not allowed" --set agents.settings.collector=wss://x:3812
must_fail "external database without its Secret" "/database/external/existingSecret" \
  --set database.mode=external
must_fail "external database without the Secret's key" "/database/external/key" \
  --set database.mode=external,database.external.existingSecret=db,database.external.key=
must_fail "existing-Secret TLS without the CA Secret" "/tls/existingSecret/caSecret" \
  --set tls.mode=existingSecret,tls.existingSecret.serverSecret=s
must_fail "existing-Secret TLS without the server Secret" "/tls/existingSecret/serverSecret" \
  --set tls.mode=existingSecret,tls.existingSecret.caSecret=c
must_fail "existing-Secret TLS, schema skipped" "needs tls.existingSecret.caSecret and serverSecret" \
  --skip-schema-validation --set tls.mode=existingSecret
# The collector publishes the agents' CA itself now: a ConfigMap value left from an older
# release's values is refused, not silently ignored.
must_fail "a removed value (the agents' CA ConfigMap)" "additional properties 'caConfigMap' not allowed" \
  --set tls.builtin.caConfigMap=dockermon-ca
must_fail "a server certificate name that is not a string" "/tls/builtin/extraSans/0" \
  --set-json 'tls.builtin.extraSans=[3812]'
must_fail "a server certificate name with a comma (DOCKERMON_PKI_SANS is comma-separated)" \
  "/tls/builtin/extraSans/0" --set-json 'tls.builtin.extraSans=["a.example.com,b.example.com"]'
must_fail "an invalid name for the CA's Secret" "/tls/builtin/secretName" \
  --set tls.builtin.secretName=Dockermon_PKI
must_fail "an unknown TLS mode" "/tls/mode" --set tls.mode=selfSigned

echo "validate-chart: $cases values files linted, rendered and valid for Kubernetes $oldest, 1.32.0" \
  "and $newest; $refused invalid values refused ($((SECONDS - started)) s)"
