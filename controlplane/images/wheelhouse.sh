#!/usr/bin/env bash
# Download the wheels the image build installs into .build/wheelhouse, on the host.
#
#   controlplane/images/wheelhouse.sh DIR ARCH     (ARCH: amd64 or arm64, the Docker engine's)
#
# Guarantees: DIR holds exactly one binary wheel for each pin of requirements.lock (markers
# ignored, so a base at either end of the lock's Python range finds what it needs) plus the
# Dockerfile's pinned setuptools, for CPython 3.11 on glibc Linux of ARCH; nothing is built from
# source. The download is skipped when the lock, the setuptools pin and ARCH are unchanged.
# Downloads go through the host's pip and its configuration (index, proxy, CA bundle), so the
# image build itself needs no network.
set -euo pipefail
dir=${1:?usage: wheelhouse.sh DIR ARCH}
arch=${2:?usage: wheelhouse.sh DIR ARCH}
repo=$(cd "$(dirname "$0")/../.." && pwd)
case "$arch" in
  amd64|x86_64) machine=x86_64 ;;
  arm64|aarch64) machine=aarch64 ;;
  *) echo "ERROR: no wheels for architecture '$arch' (amd64 and arm64 are supported)" >&2; exit 1 ;;
esac
setuptools=$(sed -n 's/^ARG SETUPTOOLS_VERSION=//p' "$repo/Dockerfile")
[ -n "$setuptools" ] || { echo "ERROR: no 'ARG SETUPTOOLS_VERSION=' in the Dockerfile" >&2; exit 1; }
stamp=$( { cat "$repo/requirements.lock"; echo "setuptools==$setuptools $machine"; } | sha256sum | cut -c1-16)
if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
  echo "==> wheelhouse $dir is up to date ($(ls "$dir"/*.whl | wc -l) wheels)"
  exit 0
fi

rm -rf "$dir" && mkdir -p "$dir"
reqs="$dir/.requirements.txt"
{ grep -v '^#' "$repo/requirements.lock" | sed 's/ *;.*//' | grep .; echo "setuptools==$setuptools"; } > "$reqs"
# pip does not widen an explicit --platform to older glibc tags: list every manylinux tag up to
# glibc 2.36 (Debian bookworm, the base of both image variants).
platforms=(--platform any --platform "manylinux2014_$machine")
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$machine"); done
echo "==> downloading $(wc -l < "$reqs") pinned wheels for CPython 3.11 linux/$machine into $dir"
"${PYTHON:-python3}" -m pip download --quiet --progress-bar off --no-deps --only-binary=:all: \
  --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none "${platforms[@]}" \
  --requirement "$reqs" --dest "$dir"
have=$(ls "$dir"/*.whl | wc -l)
want=$(wc -l < "$reqs")
[ "$have" = "$want" ] || { echo "ERROR: $have wheels downloaded for $want pins" >&2; exit 1; }
echo "$stamp" > "$dir/.stamp"
echo "==> wheelhouse ready: $have wheels, $(du -sh "$dir" | cut -f1)"
