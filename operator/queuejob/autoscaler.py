"""How many workers a QueueJob with ``spec.autoscaling`` should run: the pure decision.

Like KEDA's ScaledJob (one worker per ``itemsPerWorker`` items of queue length), built in, with
the HorizontalPodAutoscaler's downscale stabilization against flapping. No I/O here: the refresh
timer (``queuejob.handlers.autoscale``) feeds queue counts in and patches the Job.

Guarantees of :func:`recommend` and :meth:`Stabilizer.decide`:

- the recommendation for ``work`` = pending (including delayed) + leased items is
  ``clamp(ceil(work / itemsPerWorker), minParallelism, maxParallelism)``; with no work at all it
  is ``minParallelism`` (0 allowed);
- scale up at once: the decision is never below the current recommendation;
- scale down only after the window: the decision is the largest recommendation made within the
  last ``scaleDownStabilizationSeconds`` (HPA's ``behavior.scaleDown.stabilizationWindowSeconds``),
  so it falls to a lower value only once every recommendation of the whole window was at most
  that value. A recommendation that goes down and up again within the window changes nothing;
  with a window of 0 the decision follows the recommendation;
- always within ``[minParallelism, maxParallelism]`` of the current policy (narrowed bounds
  apply at once);
- the state is in memory, per QueueJob. A QueueJob the stabilizer has not seen (new, or after an
  operator restart or a failover) starts with the Job's current parallelism as a recommendation
  made now, so a restart never scales down before a full window has passed;
- memory per QueueJob is bounded by the number of distinct worker counts (a monotonic deque:
  a recommendation that can never again be the window's maximum is dropped).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable

from queuejob.spec import Autoscaling, QueueJobSpec


def workers_for(spec: QueueJobSpec, work: int) -> int:
    """Workers a new Job starts with: the recommendation for ``work`` items under
    ``spec.autoscaling``, else ``spec.parallelism``."""
    if spec.autoscaling is None:
        return spec.parallelism
    return recommend(spec.autoscaling, work)


def recommend(policy: Autoscaling, work: int) -> int:
    """Workers for ``work`` pending + leased items, clamped to the policy's bounds."""
    wanted = math.ceil(work / policy.items_per_worker) if work > 0 else 0
    return clamp(policy, wanted)


def clamp(policy: Autoscaling, workers: int) -> int:
    """``workers`` within ``[minParallelism, maxParallelism]``."""
    return min(policy.max_parallelism, max(policy.min_parallelism, workers))


@dataclasses.dataclass(frozen=True)
class Decision:
    """One decision: ``desired`` workers, the ``recommended`` count for the work seen now, and
    ``scale_down_in``: seconds until ``desired`` may fall (None when it is not above
    ``recommended``)."""

    desired: int
    recommended: int
    scale_down_in: float | None = None

    @property
    def held(self) -> bool:
        """True while a lower recommendation waits out the stabilization window."""
        return self.desired > self.recommended


class Stabilizer:
    """Per-QueueJob recommendations of the last window; used from the event loop only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> (time, recommendation), strictly decreasing in recommendation from the left
        self._windows: dict[str, deque[tuple[float, int]]] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def decide(self, key: str, policy: Autoscaling, work: int, current: int) -> Decision:
        """The worker count for QueueJob ``key`` now, given ``work`` items and the Job's
        ``current`` parallelism (used only when ``key`` is new, see the module doc)."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = deque([(now, current)])
        recommended = recommend(policy, work)
        while window and window[-1][1] <= recommended:
            window.pop()  # never again the maximum: ``recommended`` is newer and at least as big
        window.append((now, recommended))
        seconds = policy.scale_down_stabilization_seconds
        while len(window) > 1 and now - window[0][0] >= seconds:
            window.popleft()  # out of the window (now - seconds, now]
        desired = clamp(policy, window[0][1])
        scale_down_in = None
        if desired > recommended:
            scale_down_in = window[0][0] + seconds - now
        return Decision(desired, recommended, scale_down_in)

    def window(self, key: str) -> tuple[tuple[float, int], ...]:
        """The (time, recommendation) pairs kept for ``key``, oldest first."""
        return tuple(self._windows.get(key, ()))

    def forget(self, key: str) -> None:
        """Drop the state of a deleted or finished QueueJob, or one no longer autoscaled."""
        self._windows.pop(key, None)
