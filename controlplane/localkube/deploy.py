"""``make deploy`` on the local real node: the project's images and manifests/deploy-local.

What :func:`deploy` guarantees when it returns (it raises otherwise):

- every image in ``images`` was taken from Docker (``docker image save``) and imported into the
  node's containerd (namespace ``k8s.io``), so the manifests' ``IfNotPresent`` never pulls;
- ``kubectl apply -k <manifests>`` succeeded (CRD, namespace, RBAC, operator, Redis, ...);
- Secret ``queuejob-system/redis-auth`` exists; when it was absent it was created with a random
  48-hex-digit password (an existing one is never replaced, so a redeploy keeps Redis's data
  readable);
- both Deployments completed their rollout, i.e. their pods pass their real readiness probes.

:func:`undeploy` deletes all QueueJobs first (while the operator still runs, so their finalizers
are handled), then everything of the kustomization. Static volumes stay (``Retain``).
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

NAMESPACE = "queuejob-system"
DEPLOYMENTS = ("redis", "queuejob-operator")
DEFAULT_IMAGES = ("queuejob:dev", "queuejob-redis:dev")


@dataclass
class DeployTimes:
    """Seconds each step took (for the report and the tests)."""

    steps: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.steps.values())


def _run(argv: list[str], *, stdin: str | None = None, timeout: float = 120) -> str:
    result = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, check=False, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def import_docker_images(images: tuple[str, ...], import_archive: Callable[[Path], None]) -> None:
    """``docker image save`` each image and hand the archive to ``import_archive``."""
    with tempfile.TemporaryDirectory(prefix="localkube-images-") as scratch:
        for image in images:
            archive = Path(scratch) / "image.tar"
            _run(["docker", "image", "save", "-o", str(archive), image], timeout=300)
            import_archive(archive)
            archive.unlink()


def deploy(
    kubectl: list[str],
    manifests: Path,
    import_archive: Callable[[Path], None],
    images: tuple[str, ...] = DEFAULT_IMAGES,
    progress: Callable[[str], None] = print,
    rollout_timeout: int = 300,
) -> DeployTimes:
    """Deploy ``manifests`` (a kustomization) to the real node; ``kubectl`` is the command line
    up to the verb (with its ``--kubeconfig``)."""
    times = DeployTimes()
    began = time.monotonic()
    progress(f"importing {', '.join(images)} into the node's containerd")
    import_docker_images(images, import_archive)
    times.steps["images"] = time.monotonic() - began

    began = time.monotonic()
    progress(f"kubectl apply -k {manifests}")
    _run([*kubectl, "apply", "-k", str(manifests)])
    probe = subprocess.run(
        [*kubectl, "-n", NAMESPACE, "get", "secret", "redis-auth"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if probe.returncode != 0:
        progress(f"creating Secret {NAMESPACE}/redis-auth with a random Redis password")
        _run(
            [*kubectl, "-n", NAMESPACE, "create", "secret", "generic", "redis-auth",
             "--from-file=password=/dev/stdin"],
            stdin=secrets.token_hex(24),
        )  # fmt: skip
    times.steps["apply"] = time.monotonic() - began

    began = time.monotonic()
    for name in DEPLOYMENTS:
        progress(f"waiting for deployment/{name} (its readiness probe)")
        _run(
            [*kubectl, "-n", NAMESPACE, "rollout", "status", f"deployment/{name}",
             f"--timeout={rollout_timeout}s"],
            timeout=rollout_timeout + 30,
        )  # fmt: skip
    times.steps["rollout"] = time.monotonic() - began
    return times


def undeploy(kubectl: list[str], manifests: Path) -> None:
    """Delete all QueueJobs (the operator still runs), then everything of ``manifests``."""
    subprocess.run(
        [*kubectl, "delete", "queuejobs", "--all", "--all-namespaces", "--timeout=120s"],
        capture_output=True,
        check=False,
        timeout=150,
    )
    _run(
        [*kubectl, "delete", "-k", str(manifests), "--ignore-not-found", "--timeout=180s"],
        timeout=210,
    )
