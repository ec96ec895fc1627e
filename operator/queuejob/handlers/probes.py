"""kopf liveness probe extras: handler concurrency, reported at the liveness endpoint."""

from __future__ import annotations

from typing import Any

import kopf

from queuejob.runtime import Runtime


@kopf.on.probe(id="handlers")
def handlers_in_flight(memo: kopf.Memo, **_: Any) -> dict[str, int]:
    """Handlers in flight now, their high-water mark and the operator-wide limit."""
    runtime: Runtime = memo.runtime
    return {
        "in_flight": runtime.limiter.in_flight,
        "max_in_flight": runtime.limiter.max_in_flight,
        "limit": runtime.settings.max_concurrent_handlers,
    }
