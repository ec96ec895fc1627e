"""The operator's handler module: ``kopf run -m queuejob.operator_main`` (or ``queuejob operator``).

Importing it registers every handler with kopf's default registry.
"""

from __future__ import annotations

from queuejob.handlers import (
    autoscale,
    cleanup,
    events,
    login,
    nodeloss,
    probes,
    recheck,
    reconcile,
    refresh,
    scaling,
    startup,
)

__all__ = [
    "autoscale",
    "cleanup",
    "events",
    "login",
    "nodeloss",
    "probes",
    "recheck",
    "reconcile",
    "refresh",
    "scaling",
    "startup",
]
