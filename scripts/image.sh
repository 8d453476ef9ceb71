#!/usr/bin/env bash
# Builds a container image of a Dockermon binary without any base image (no registry needed):
# the optimised binary (the agent's size-optimised `agent` profile, the collector's
# `release`) plus exactly the shared libraries `ldd` lists, imported with
# `docker import`. It runs as the unprivileged user `dockermon` (uid/gid 65532), which owns
# the state directory; the agent reads the Docker socket through the socket's group
# (`docker run --group-add "$(stat -c %g /var/run/docker.sock)" …`).
# Usage: scripts/image.sh agent|collector [TAG] [PROFILE]
# Result: dockermon/<component>:<TAG> (default: the workspace version), from the binary of
# cargo profile PROFILE (default as above; the chart's e2e test, scripts/chart-e2e.sh, uses
# `dev`, the build the tests already made, to spare CI two optimised builds).
set -euo pipefail
cd "$(dirname "$0")/.."

component=${1:?usage: scripts/image.sh agent|collector [TAG]}
case "$component" in agent|collector) ;; *) echo "unknown component: $component" >&2; exit 2 ;; esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${2:-$version}

case "$component" in agent) profile=agent ;; collector) profile=release ;; esac
profile=${3:-$profile}
if [[ $profile == dev ]]; then
  # The tests' own build, with their workspace-wide feature set (docs/ARCHITECTURE.md,
  # "Testing against real parts"): nothing to do after a test run.
  cargo test --no-run --quiet --locked --workspace
else
  cargo build --profile "$profile" --locked -p "dockermon-$component"
fi
# Wherever cargo puts it (CARGO_TARGET_DIR, a config file), not necessarily ./target; the
# dev profile's directory is called debug.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
profile_dir=$profile
[[ $profile != dev ]] || profile_dir=debug
binary=$target_dir/$profile_dir/dockermon-$component

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/etc/ssl/certs"
chmod 1777 "$root/tmp"
cp "$binary" "$root/usr/local/bin/"
# The dynamic loader and every library the binary links, at the same paths.
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/:/sbin/nologin
dockermon:x:65532:65532:dockermon:/nonexistent:/sbin/nologin
nobody:x:65534:65534:nobody:/:/sbin/nologin
PASSWD
printf 'root:x:0:\ndockermon:x:65532:\nnogroup:x:65534:\n' >"$root/etc/group"
case "$component" in
  agent) state=/var/lib/dockermon-agent; env=DOCKERMON_STATE_DIR ;;
  collector) state=/var/lib/dockermon; env=DOCKERMON_DATA_DIR ;;
esac
mkdir -p "$root$state"
chmod 0700 "$root$state"

# Everything owned by root, but the state directory, owned by the user that runs.
archive=$root.tar
tar -C "$root" -cf "$archive" --numeric-owner --owner=0 --group=0 --exclude="./${state#/}" .
tar -C "$root" -rf "$archive" --numeric-owner --owner=65532 --group=65532 "./${state#/}"
trap 'rm -rf "$root" "$archive"' EXIT
docker import \
  -c "ENTRYPOINT [\"/usr/local/bin/dockermon-$component\"]" \
  -c 'ENV PATH=/usr/local/bin' \
  -c "ENV $env=$state" \
  -c 'USER 65532:65532' \
  -m "dockermon $component $version" "$archive" "dockermon/$component:$tag" >/dev/null
echo "built dockermon/$component:$tag"
