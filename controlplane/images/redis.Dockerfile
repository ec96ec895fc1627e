# queuejob-redis:dev - Debian's redis-server, for manifests/deploy where no registry is reachable.
#
# Built by `make redis-image`: controlplane/images/debian-base.sh makes the base from Debian's
# archive with redis-server and redis-tools in it (no pull), and this file only prepares /data and
# the user. It runs as uid/gid 999, the user manifests/deploy/redis.yaml sets (runAsUser 999,
# fsGroup 999, as the upstream redis image it replaces), and keeps its data in /data. The
# manifests give redis-server its configuration on stdin (`redis-server -`), so the CMD below is
# only what `docker run queuejob-redis:dev` alone does.
ARG BASE=queuejob-redis-base:bookworm
FROM ${BASE}

# Group-writable with the setgid bit, as a volume is under fsGroup 999.
RUN install -d -o 999 -g 999 -m 2770 /data

USER 999:999
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--dir", "/data", "--protected-mode", "yes"]
