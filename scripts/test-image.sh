#!/usr/bin/env bash
# Builds the local test image `dockermon-test/busybox:latest`: a root filesystem holding
# Debian's static busybox and its applet links, imported with `docker import`. No registry
# is needed (none is reachable on CI machines). Idempotent; pass --force to rebuild.
set -euo pipefail

image=dockermon-test/busybox:latest
if [[ "${1:-}" != --force ]] && docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi

busybox=
for candidate in "$(command -v busybox || true)" /bin/busybox /usr/bin/busybox; do
  if [[ -x "$candidate" ]] && [[ "$(ldd "$candidate" 2>&1 || true)" == *"not a dynamic executable"* ]]; then
    busybox=$candidate
    break
  fi
done
if [[ -z "$busybox" ]]; then
  echo "test-image: a static busybox is needed (Debian: apt-get install busybox-static)" >&2
  exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/bin "$root"/tmp "$root"/etc "$root"/proc "$root"/sys "$root"/dev
chmod 1777 "$root"/tmp
cp "$busybox" "$root"/bin/busybox
for applet in $("$root"/bin/busybox --list); do
  [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' >"$root"/etc/passwd
echo 'root:x:0:' >"$root"/etc/group

tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' \
  -m 'dockermon test image (static busybox)' - "$image" >/dev/null
echo "test-image: built $image"
