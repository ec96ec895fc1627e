"""Deterministic names derived from a QueueJob: its Job, its Redis queue and its Secret.

The same QueueJob (namespace, name, uid) always maps to the same names, so every handler is
idempotent: it can recompute a name instead of remembering it. Kubernetes names are at most
63 characters for Jobs (the Job controller adds a label with the Job name) and 253 for Secrets;
long QueueJob names are shortened with a stable hash suffix. The CRD admits only DNS-label names
of at most :data:`MAX_QUEUEJOB_NAME` characters, whose Job name is never shortened.
"""

from __future__ import annotations

import hashlib

#: Group, version and plural of the QueueJob custom resource.
GROUP = "workqueue.example.com"
VERSION = "v1alpha1"
PLURAL = "queuejobs"
KIND = "QueueJob"

#: Label put on every object the operator creates for a QueueJob (value: the QueueJob's name).
QUEUEJOB_LABEL = f"{GROUP}/queuejob"
#: kopf's diff base: the spec it last handled, as JSON in this annotation of the QueueJob.
DIFFBASE_KEY = "last-handled-configuration"
DIFFBASE_ANNOTATION = f"{GROUP}/{DIFFBASE_KEY}"

_MAX_JOB_NAME = 63
#: Longest QueueJob name the CRD admits (which also rejects '.'): the worker Job is Indexed, and
#: the API server requires its pods' hostname ``<job name>-<completions - 1>`` to be a DNS label
#: (no '.', at most 63 characters); with ``<name>-workers`` and up to 100 workers (index 99)
#: that leaves 63 - 8 - 3 = 52.
MAX_QUEUEJOB_NAME = 52


def _fit(base: str, suffix: str, limit: int) -> str:
    """``base + suffix`` if it fits in ``limit`` characters, else a hashed shortening of base."""
    name = f"{base}{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 1
    return f"{base[:keep].rstrip('-.')}-{digest}{suffix}"


def job_name(queuejob_name: str) -> str:
    """The worker Job's name: ``<qj-name>-workers`` (hash-shortened to 63 characters)."""
    return _fit(queuejob_name, "-workers", _MAX_JOB_NAME)


def secret_name(queuejob_name: str) -> str:
    """The per-QueueJob Secret holding the Redis password for the workers."""
    return _fit(queuejob_name, "-redis", 253)


def queue_name(namespace: str, queuejob_name: str, uid: str) -> str:
    """The Redis queue name: namespace, name and the first 8 hex digits of the uid.

    The uid part keeps a re-created QueueJob of the same name from reusing stale keys.
    """
    return f"qj:{namespace}:{queuejob_name}:{uid.replace('-', '')[:8]}"
