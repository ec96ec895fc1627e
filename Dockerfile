# syntax=docker/dockerfile:1
#
# queuejob:dev - one image for both roles of the QueueJob operator:
#
#   docker run queuejob:dev                  -> `queuejob operator`  (the kopf operator; default CMD)
#   docker run queuejob:dev worker           -> `queuejob worker`    (a worker pod of a QueueJob's Job)
#   docker run queuejob:dev seed ...         -> `queuejob seed`      (fill a queue, see manifests/fine-parallel)
#
# Build: `make image` (= docker build -t queuejob:dev .). Two stages:
#   builder - makes a virtualenv in /opt/venv holding exactly the pinned runtime dependencies of
#             requirements.lock (binary wheels only, --no-deps, then `pip check`) plus this project's
#             own wheel, built with a pinned setuptools;
#   runtime - the same slim Python base minus its pip/setuptools/wheel, plus /opt/venv: no compiler,
#             no build backend, no pip, no source tree. Runs as the numeric non-root user 10001.
#
# The base image is pinned by tag and by the digest of its multi-platform index (published in many
# public Dockerfiles; not re-checked by pulling here, because this repo's CI has no Docker). To refresh:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   # "Digest:" line
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Runtime virtualenv: the pinned dependency closure first (its own layer, cached across code changes).
RUN python -m venv /opt/venv
COPY requirements.lock /src/requirements.lock
RUN /opt/venv/bin/pip install --no-deps --only-binary=:all: --requirement /src/requirements.lock

# This project's wheel, built with a pinned build backend in a throw-away environment.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --only-binary=:all: setuptools==84.2.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/queuejob ./operator/queuejob
COPY operator/workqueue ./operator/workqueue
COPY controlplane/localkube ./controlplane/localkube
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
 && /opt/venv/bin/pip install --no-deps /dist/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/queuejob --help >/dev/null \
 && /opt/venv/bin/python -m pip uninstall --yes pip

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="queuejob" \
      org.opencontainers.image.description="QueueJob operator and worker: the work-queue pattern for Kubernetes operators in Python (kopf + Redis)" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp

# The base image's own pip/setuptools/wheel are not needed at run time: remove them.
RUN /usr/local/bin/python -m pip uninstall --yes --no-cache-dir --disable-pip-version-check pip setuptools wheel

COPY --from=builder /opt/venv /opt/venv

# Numeric user and group, so that `runAsNonRoot: true` can be verified by the kubelet without /etc/passwd.
USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["queuejob"]
CMD ["operator"]
