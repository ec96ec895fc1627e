#
# queuejob:dev - one image for both roles of the QueueJob operator:
#
#   docker run queuejob:dev                  -> `queuejob operator`  (the kopf operator; default CMD)
#   docker run queuejob:dev worker           -> `queuejob worker`    (a worker pod of a QueueJob's Job)
#   docker run queuejob:dev seed ...         -> `queuejob seed`      (fill a queue, see manifests/fine-parallel)
#
# Build with `make image`, not `docker build` alone: make first downloads the pinned wheels on the
# host into .build/wheelhouse (the build context holds them), so the build itself never reaches an
# index. That works offline, behind a TLS-inspecting proxy, and gives the same files every time.
# It builds with BuildKit and with the legacy builder (no `# syntax=` line: that makes BuildKit pull
# a frontend image).
#
# Two stages:
#   builder - checks that the base's Python is one requirements.lock is valid for (its "# python:"
#             line), then makes a virtualenv /opt/venv holding exactly the locked runtime
#             dependencies (binary wheels, --no-deps, then `pip check`) plus this project's own
#             wheel (built with the pinned setuptools below); the parts of the `kubernetes`
#             client the image never imports are pruned (prune_kubernetes.py: the asyncio twin,
#             unused generated API and model modules, the package's tests), then pip and
#             setuptools are removed, so its distributions are exactly the lock plus
#             queuejob-operator;
#   runtime - the same base minus its own pip/setuptools/wheel (if any), plus /opt/venv: no
#             compiler, no build backend, no pip, no source tree. Numeric non-root user 10001.
#
# The base: the upstream Python image below, pinned by tag and multi-platform index digest. Where
# it cannot be pulled, `make image` builds a Debian bookworm base from Debian's archive instead
# (IMAGE_BASE=debian; controlplane/images/debian-base.sh) and passes it as PYTHON_IMAGE. To refresh
# the upstream pin: docker buildx imagetools inspect python:3.11.14-slim-bookworm  ("Digest:").
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# The build backend of this project's own wheel (in the wheelhouse too; see the Makefile).
ARG SETUPTOOLS_VERSION=84.2.1

# No index at all: every wheel comes from the host-built wheelhouse.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/wheels

COPY requirements.lock controlplane/images/check_python_range.py /src/
RUN python3 /src/check_python_range.py /src/requirements.lock

COPY .build/wheelhouse/ /wheels/

# Runtime virtualenv: the pinned dependency closure first (its own layer, cached across code changes).
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps --only-binary=:all: --requirement /src/requirements.lock

# This project's wheel, built with the pinned build backend in a throw-away environment.
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --only-binary=:all: "setuptools==${SETUPTOOLS_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/queuejob ./operator/queuejob
COPY operator/workqueue ./operator/workqueue
# The generated `kubernetes` client is ~125 MB, of which the image uses one API class and a few
# models: the rest goes (prune_kubernetes.py finds what the image imports; --check re-imports it).
COPY controlplane/images/prune_kubernetes.py /src/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
 && /opt/venv/bin/pip install --no-deps /dist/*.whl \
 && /opt/venv/bin/python /src/prune_kubernetes.py \
 && /opt/venv/bin/python /src/prune_kubernetes.py --check \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/queuejob --help >/dev/null \
 && /opt/venv/bin/python -m pip uninstall --yes pip setuptools

# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="queuejob" \
      org.opencontainers.image.description="QueueJob operator and worker: the work-queue pattern for Kubernetes operators in Python (kopf + Redis)" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp

# The upstream base's own pip/setuptools/wheel are not needed at run time (a Debian base has none).
RUN if python3 -m pip --version >/dev/null 2>&1; then \
      python3 -m pip uninstall --yes --no-cache-dir --disable-pip-version-check pip setuptools wheel; \
    fi

COPY --from=builder /opt/venv /opt/venv

# Numeric user and group, so that `runAsNonRoot: true` can be verified by the kubelet without /etc/passwd.
USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["queuejob"]
CMD ["operator"]
