"""Helpers to call operator code that uses kopf outside a running kopf."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kopf._core.engines import posting


def capture_events() -> asyncio.Queue[Any]:
    """Route ``kopf.event()`` of the current task into a queue the test can read.

    kopf keeps its Event poster in context variables set by ``kopf run``; call this inside the
    running event loop (e.g. at the start of the coroutine given to ``asyncio.run``).
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()
    posting.settings_var.set(kopf.OperatorSettings())
    posting.event_queue_loop_var.set(asyncio.get_running_loop())
    posting.event_queue_var.set(queue)
    return queue


def drain(queue: asyncio.Queue[Any]) -> list[Any]:
    """Everything queued so far."""
    return [queue.get_nowait() for _ in range(queue.qsize())]
