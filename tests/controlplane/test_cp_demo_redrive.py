"""``make demo`` end to end (``python -m queuejob_demo``, its own local control plane): the
poison item fails the QueueJob, the demo fixes it and redrives it, the QueueJob ends Succeeded."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(900)


def test_demo_shows_failed_then_redrives_to_succeeded() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "queuejob_demo"],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    failed = out.index("Phase Failed: as expected")
    redrive = out.index("$ kubectl queuejob redrive retries-and-poison --all")
    succeeded = out.index("Phase Succeeded: as expected")
    assert failed < redrive < succeeded
    assert "poison-15   3          poison item 'poison-15' always fails" in out
    assert "redrive: 1 dead letter back to pending" in out
    status = out[out.index("$ kubectl queuejob status") : succeeded]
    assert "phase: Succeeded" in status and "succeeded 20   failed 0" in status
    assert "WorkersRestarted" in status and "Redriven" in status
