#!/usr/bin/env bash
# Make sure a Docker engine answers, starting one where this machine has none running.
#
#   controlplane/images/docker-up.sh
#
# - An engine that already answers `docker info` (Docker Desktop, a systemd docker.service, a
#   remote DOCKER_HOST) is used as it is: nothing is installed or started.
# - Otherwise, as root: Debian's docker.io (dockerd, containerd, runc) and mmdebstrap are
#   installed when missing, and dockerd is started in the background with its log in
#   /var/log/queuejob-dockerd.log; it keeps running for later builds and tests.
# - Otherwise (not root, no engine): exit 1 with the reason on stderr, so callers can skip.
# Exit 0 once `docker info` answers (within 60 s of starting dockerd).
set -euo pipefail
log=/var/log/queuejob-dockerd.log

answers() { timeout 20 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
  echo "==> Docker engine $(docker version -f '{{.Server.Version}}' 2>/dev/null) answers"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "no Docker engine answers 'docker info' and this user is not root, so none can be started here (start Docker, or run as root)" >&2
  exit 1
fi
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]} from Debian"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ca-certificates iptables \
    | grep --line-buffered -E '^(Setting up|Unpacking)' | sed -u 's/^/    /' || true
  command -v dockerd >/dev/null 2>&1 || { echo "installing docker.io failed" >&2; exit 1; }
fi
command -v docker >/dev/null 2>&1 || { echo "the docker client is missing after installing docker.io" >&2; exit 1; }
if ! pgrep -x dockerd >/dev/null; then
  echo "==> starting dockerd (log: $log)"
  setsid dockerd >>"$log" 2>&1 < /dev/null &
fi
for _ in $(seq 120); do
  if answers; then
    echo "==> Docker engine $(docker version -f '{{.Server.Version}}') answers"
    exit 0
  fi
  sleep 0.5
done
echo "dockerd did not answer within 60 s; the end of $log:" >&2
tail -n 20 "$log" >&2
exit 1
