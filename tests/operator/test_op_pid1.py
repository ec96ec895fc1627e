"""``queuejob`` as PID 1 of its PID namespace (as in every container) honours an early SIGTERM.

The kernel delivers a signal from outside a PID namespace to the namespace's PID 1 only when it
has a handler; the kubelet's SIGTERM of a deleted pod that arrived while Python was still
importing was ignored, and the worker ran on until the SIGKILL 30 s later (found on the real
node: deleted and suspended workers held their Job index for the whole grace period). Here the
console script runs as PID 1 of a new PID namespace (``unshare --pid --fork``, root) without any
worker configuration: SIGTERM is sent as soon as the process catches it, and the process must
end with 143 before it ever reads its configuration (which would end it with "bad worker
configuration").
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
QUEUEJOB = Path(sys.executable).with_name("queuejob")
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:  # gone (FileNotFoundError), or gone while read (ProcessLookupError)
        return []
    return [int(word) for word in text.split()]


def _catches_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone (FileNotFoundError), or gone while read (ProcessLookupError)
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & SIGTERM_BIT)


@pytest.mark.skipif(os.geteuid() != 0, reason="a new PID namespace needs root")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is missing")
def test_pid1_worker_ends_on_sigterm_while_still_importing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEJOB_")}
    process = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", str(QUEUEJOB), "worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        child = None
        while time.monotonic() < deadline and process.poll() is None:
            kids = _children(process.pid)
            if kids and _catches_sigterm(kids[0]):
                child = kids[0]
                break
            time.sleep(0.001)
        assert child is not None, f"the PID-1 process never caught SIGTERM: {process.poll()}"
        os.kill(child, signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, stderr
    assert "bad worker configuration" not in stderr, stderr
