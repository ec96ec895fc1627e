"""Entry point of the ``queuejob`` console script: SIGTERM is honoured from the first moment.

In a container the command is PID 1 of the pod's PID namespace, and the kernel delivers a
signal from outside that namespace to its PID 1 only when a handler is installed: the default
action of SIGTERM (terminate) does not apply there. The kubelet sends SIGTERM once when a pod is
deleted, then SIGKILL after the grace period (30 s). Python's imports before ``queuejob worker``
or ``queuejob operator`` install their own handlers take 0.5-0.8 s in the image (seconds on a
loaded node); a pod deleted in that window ignored the SIGTERM, went on leasing and processing
items, and was SIGKILLed 30 s later (exit 137), holding up the replacement of its index, a
suspend, or a rollout for the whole grace period.

Guarantee: when the process is PID 1, from :func:`main`'s first statement until the command
replaces the handler with its own (the worker's graceful stop, the leader election's), SIGTERM
ends the process at once with exit code 143, as the default action does for any other process.
Nothing is held yet at that point (no lease, no Lease), so there is nothing to give back.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended


def _terminate(signum: int, _frame: FrameType | None) -> None:
    os._exit(EXIT_TERMINATED)


def main() -> int:
    """Install the PID-1 SIGTERM handler, then run :func:`queuejob.cli.main`."""
    if os.getpid() == 1:
        signal.signal(signal.SIGTERM, _terminate)
    from queuejob.cli import main as cli_main  # the heavy imports come after the handler

    return cli_main()
