#!/usr/bin/env bash
# Builds a container image of a Dockermon binary without any base image (no registry needed):
# the release binary plus exactly the shared libraries `ldd` lists, imported with
# `docker import`. Usage: scripts/image.sh agent|collector [TAG]
# Result: dockermon/<component>:<TAG> (default: the workspace version).
set -euo pipefail
cd "$(dirname "$0")/.."

component=${1:?usage: scripts/image.sh agent|collector [TAG]}
case "$component" in agent|collector) ;; *) echo "unknown component: $component" >&2; exit 2 ;; esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${2:-$version}

cargo build --release --locked -p "dockermon-$component"
# Wherever cargo puts it (CARGO_TARGET_DIR, a config file), not necessarily ./target.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
binary=$target_dir/release/dockermon-$component

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
echo 'root:x:0:0:root:/:/sbin/nologin' >"$root/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/sbin/nologin' >>"$root/etc/passwd"

tar -C "$root" -c . | docker import \
  -c "ENTRYPOINT [\"/usr/local/bin/dockermon-$component\"]" \
  -c 'ENV PATH=/usr/local/bin' \
  -m "dockermon $component $version" - "dockermon/$component:$tag" >/dev/null
echo "built dockermon/$component:$tag"
