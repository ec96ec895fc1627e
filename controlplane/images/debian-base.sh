#!/usr/bin/env bash
# Build a container base image from Debian's archive alone, for machines that cannot pull images.
#
#   controlplane/images/debian-base.sh TAG [PACKAGE ...]
#
# The root filesystem is Debian ${DEBIAN_SUITE:-bookworm} (variant minbase) made by mmdebstrap from
# ${DEBIAN_MIRROR} (default deb.debian.org) plus the suite's -updates and -security pockets, with
# the PACKAGEs added, then `docker import`ed as TAG. Guarantees:
#   - nothing but Debian's signed archive is fetched, by apt on the host: no registry, no pull;
#   - reproducible by pinning: DEBIAN_SNAPSHOT=20251101T000000Z builds from snapshot.debian.org at
#     that instant (the same bytes every time, where that host is reachable); without it the suite's
#     current packages are taken, and their exact versions are written to /etc/image-packages in
#     the image and shown by `docker run --rm TAG cat /etc/image-packages`;
#   - file dates are clamped to SOURCE_DATE_EPOCH (default: the newest commit's date) and docs,
#     man pages, locales, apt lists and caches are left out, and /usr is merged without the
#     usrmerge package (and the perl it needs), so the image is small;
#   - the image is rebuilt only when this script, the suite, the pin or the package list change
#     (a label holds their hash).
set -euo pipefail

tag=${1:?usage: debian-base.sh TAG [PACKAGE ...]}
shift
packages=("$@")
suite=${DEBIAN_SUITE:-bookworm}
snapshot=${DEBIAN_SNAPSHOT:-}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
if [ -n "$snapshot" ]; then
  mirror="http://snapshot.debian.org/archive/debian/$snapshot"
  security="http://snapshot.debian.org/archive/debian-security/$snapshot"
fi

here=$(cd "$(dirname "$0")" && pwd)
inputs=$(printf '%s\n' "$(sha256sum < "$here/debian-base.sh")" "$suite" "$snapshot" "$mirror" "${packages[*]}" | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{ index .Config.Labels "org.queuejob.base-inputs" }}' "$tag" 2>/dev/null)" = "$inputs" ]; then
  echo "==> $tag is up to date (inputs $inputs)"
  exit 0
fi

command -v mmdebstrap >/dev/null || { echo "ERROR: mmdebstrap is missing: apt-get install mmdebstrap (make install-docker does)" >&2; exit 1; }
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

include=$(IFS=,; echo "${packages[*]}")
# Merged /usr the way debootstrap makes it (symlinks + usr-is-merged). Without this hook apt
# satisfies bookworm's "usrmerge | usr-is-merged" with usrmerge, which pulls in all of perl
# (~50 MB that nothing in the image uses); perl-base, which dpkg needs, stays.
hooks=()
if [ -d /usr/share/mmdebstrap/hooks/merged-usr ]; then
  hooks=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
fi
echo "==> building $tag from Debian $suite${snapshot:+ (snapshot $snapshot)}: minbase + ${include:-nothing}"
start=$SECONDS
# mmdebstrap prints one line per step (download, unpack, configure); that is the progress shown.
mmdebstrap --variant=minbase --mode=root --format=tar ${include:+--include="$include"} "${hooks[@]}" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='chroot "$1" dpkg-query -W -f "\${Package}=\${Version}\n" > "$1/etc/image-packages"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
  "$suite" "$work/rootfs.tar" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" \
  2>&1 | grep --line-buffered -E '^(I|W|E):' | sed -u 's/^/    /'

docker import \
  --change "LABEL org.queuejob.base-inputs=$inputs org.queuejob.debian-suite=$suite" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'CMD ["/bin/sh"]' \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "==> $tag built in $((SECONDS - start)) s: $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'), $(docker run --rm "$tag" sh -c 'wc -l < /etc/image-packages') Debian packages"
