#!/usr/bin/env bash
# `make image`: build the queuejob image from the Dockerfile, on a base that this machine can get.
#
# Environment (the Makefile passes its variables of the same names):
#   IMAGE              tag to build                         [queuejob:dev]
#   IMAGE_BASE         auto | upstream | debian             [auto]
#                        upstream: the Dockerfile's pinned python:3.11-slim image (or PYTHON_IMAGE);
#                                  a pull failure stops the build with a hint
#                        debian:   a base built here from Debian's archive (debian-base.sh)
#                        auto:     upstream if it is present or can be pulled, else debian (said so)
#   PYTHON_IMAGE       another upstream base (any CPython in requirements.lock's range)
#   REGISTRY_MIRROR    host[/path] that mirrors Docker Hub: the upstream base is pulled through it
#   DEBIAN_BASE_IMAGE  tag of the Debian-built base          [queuejob-base:bookworm]
#   DOCKER_BUILDKIT    1 or 0; unset: BuildKit when `docker buildx` exists, else the legacy builder
# Needs the wheelhouse (.build/wheelhouse, wheelhouse.sh) in place. Prints each build step.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
image=${IMAGE:-queuejob:dev}
mode=${IMAGE_BASE:-auto}
debian_base=${DEBIAN_BASE_IMAGE:-queuejob-base:bookworm}
pinned=$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)
upstream=${PYTHON_IMAGE:-$pinned}
if [ -n "${REGISTRY_MIRROR:-}" ] && [[ "$upstream" != */*/* ]]; then
  # Docker Hub short names (python:..., library/python:...) are pulled through the mirror.
  [[ "$upstream" == */* ]] || upstream="library/$upstream"
  upstream="${REGISTRY_MIRROR%/}/$upstream"
fi

have_upstream() {
  docker image inspect "$upstream" >/dev/null 2>&1 && return 0
  echo "==> pulling the base image $upstream"
  timeout 300 docker pull "$upstream" 2>&1 | tail -n 3 | sed 's/^/    /'
  return "${PIPESTATUS[0]}"
}

case "$mode" in
  upstream)
    if ! have_upstream; then
      cat >&2 <<MSG
ERROR: the base image $upstream cannot be pulled (see Docker's error above).
       Options:  make image REGISTRY_MIRROR=<host that mirrors Docker Hub>
                 make image PYTHON_IMAGE=<another CPython 3.11 image you can pull>
                 make image IMAGE_BASE=debian   (build the base from Debian's archive; no registry)
MSG
      exit 1
    fi
    base=$upstream ;;
  debian)
    bash controlplane/images/debian-base.sh "$debian_base" python3 python3-venv
    base=$debian_base ;;
  auto)
    if have_upstream; then
      base=$upstream
    else
      echo "==> $upstream cannot be pulled here: building the base from Debian's archive instead"
      echo "    (IMAGE_BASE=debian; for the upstream base set REGISTRY_MIRROR or PYTHON_IMAGE, see docs/deploying.md)"
      bash controlplane/images/debian-base.sh "$debian_base" python3 python3-venv
      base=$debian_base
    fi ;;
  *) echo "ERROR: IMAGE_BASE must be auto, upstream or debian, not '$mode'" >&2; exit 2 ;;
esac

if [ -z "${DOCKER_BUILDKIT:-}" ]; then
  if docker buildx version >/dev/null 2>&1; then DOCKER_BUILDKIT=1; else DOCKER_BUILDKIT=0; fi
fi
export DOCKER_BUILDKIT
builder=$([ "$DOCKER_BUILDKIT" = 1 ] && echo BuildKit || echo "the legacy builder")
progress=()
[ "$DOCKER_BUILDKIT" = 1 ] && progress=(--progress=plain)
echo "==> building $image on $base with $builder"
start=$SECONDS
docker build "${progress[@]}" --build-arg "PYTHON_IMAGE=$base" -t "$image" .
size=$(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')
base_size=$(docker image inspect -f '{{.Size}}' "$base" | awk '{printf "%.0f MB", $1/1e6}')
venv_size=$(docker run --rm --network none --entrypoint sh "$image" \
    -c 'du -sk /opt/venv; du -sk /opt/venv/lib/python3*/site-packages/kubernetes' \
  | awk '{printf "%s%.0f MB", (NR > 1 ? ", kubernetes " : ""), $1 * 1024 / 1e6}')
echo "==> built $image in $((SECONDS - start)) s: $size (base $base_size, /opt/venv $venv_size), base $base"
