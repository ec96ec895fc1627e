"""The image, built for real: what it holds, who it runs as, and that both builders build it.

``images`` (conftest.py) builds queuejob:dev with ``make image`` (its progress is what ``make
test`` prints before pytest) and skips these tests only where no Docker engine can be started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile

import pytest
from mf_docker import Images, docker, inspect
from mf_support import REPO
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = [pytest.mark.timeout(900)]

_LIST = (
    "import importlib.metadata as m, json, sys; "
    "print(json.dumps({'python': '.'.join(map(str, sys.version_info[:3])), "
    "'dists': {d.metadata['Name']: d.version for d in m.distributions()}}))"
)


def _python(image: str, code: str) -> subprocess.CompletedProcess[str]:
    return docker("run", "--rm", "--entrypoint", "python3", image, "-c", code, check=False)


def test_distributions_are_exactly_the_runtime_lock(images: Images) -> None:
    out = json.loads(_python(images.queuejob, _LIST).stdout)
    env = {**default_environment(), "python_full_version": out["python"], "extra": ""}
    want: dict[str, str] = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                want[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    want["queuejob-operator"] = "0.1.0"
    have = {canonicalize_name(n): v for n, v in out["dists"].items()}
    assert have == want, (
        f"in the image, not in the lock: {sorted(set(have) - set(want))}; "
        f"in the lock, not in the image: {sorted(set(want) - set(have))}; "
        f"other versions: {sorted(n for n in have.keys() & want.keys() if have[n] != want[n])}"
    )


def test_no_development_tooling_in_the_image(images: Images) -> None:
    code = (
        "import importlib.util as u; "
        "print([n for n in ('localkube', 'queuejob_demo', 'pykube', 'cryptography', 'pytest', "
        "'pip', 'setuptools') if u.find_spec(n)])"
    )
    result = _python(images.queuejob, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    for role in ("operator", "worker", "seed"):
        help_text = docker("run", "--rm", images.queuejob, role, "--help").stdout
        assert "usage" in help_text.lower(), (role, help_text)


_KUBERNETES = (
    "import importlib.metadata as m, importlib.util as u, json; "
    "import kubernetes.client as c\n"
    "kept = [n for n in ('ApiClient', 'CoordinationV1Api', 'V1Lease', 'V1ObjectMeta', "
    "'V1OwnerReference') if getattr(c, n)]\n"
    "pruned = []\n"
    "for n in ('CoreV1Api', 'BatchV1Api', 'V1Pod'):\n"
    "    try: getattr(c, n)\n"
    "    except ModuleNotFoundError: pruned.append(n)\n"
    "d = m.distribution('kubernetes')\n"
    "print(json.dumps({'kept': kept, 'pruned': pruned, 'aio': bool(u.find_spec('kubernetes.aio')), "
    "'version': d.version, 'files': [str(f) for f in d.files], "
    "'absent': [str(f) for f in d.files if not f.locate().exists()]}))"
)
#: Where the image build may remove files of the ``kubernetes`` wheel (prune_kubernetes.py).
_PRUNABLE = ("kubernetes/aio/", "kubernetes/client/api/", "kubernetes/client/models/")


def test_kubernetes_client_is_pruned_to_what_the_image_uses(images: Images) -> None:
    result = _python(images.queuejob, _KUBERNETES)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert len(out["kept"]) == 5, out["kept"]
    assert out["pruned"] == ["CoreV1Api", "BatchV1Api", "V1Pod"]
    assert not out["aio"], "kubernetes.aio (the asyncio twin) is still in the image"
    assert out["absent"] == [], f"RECORD lists files that are not there: {out['absent'][:5]}"
    # What went, against the locked wheel itself: only the asyncio twin, generated API and model
    # modules, and the package's own tests; every other file of the wheel is still there.
    (wheel,) = (REPO / ".build" / "wheelhouse").glob(f"kubernetes-{out['version']}-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if not n.endswith("/")}
    gone = shipped - set(out["files"])
    assert "kubernetes/client/api/core_v1_api.py" in gone and "kubernetes/aio/__init__.py" in gone
    unexpected = [
        name
        for name in sorted(gone)
        if not name.startswith(_PRUNABLE)
        and not name.rsplit("/", 1)[-1].endswith("_test.py")
        and not name.rsplit("/", 1)[-1].startswith("test_")
        and "/e2e_test/" not in name
    ]
    assert unexpected == [], f"files of the wheel pruned outside the generated code: {unexpected}"


def test_runs_as_numeric_non_root_with_a_read_only_root(images: Images) -> None:
    config = inspect(images.queuejob)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["queuejob"] and config["Cmd"] == ["operator"]
    result = docker(
        "run", "--rm", "--read-only", "--cap-drop", "ALL", "--entrypoint", "sh",
        images.queuejob, "-c", "id -u; id -g; touch /opt/venv/x 2>/dev/null && echo writable",
        check=False,
    )  # fmt: skip
    assert result.stdout.split() == ["10001", "10001"], result.stdout + result.stderr


def _other_builder() -> tuple[list[str], dict[str, str], str]:
    """A docker command and environment using the builder ``make image`` did not use here."""
    buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False)
    if buildx.returncode == 0:
        return ["docker"], {"DOCKER_BUILDKIT": "0"}, "the legacy builder"
    # No buildx: make image used the legacy builder. A docker client older than 23 (Debian's
    # /usr/bin/docker 20.10) still has BuildKit built in.
    for client in ("/usr/bin/docker", shutil.which("docker") or "docker"):
        version = subprocess.run(
            [client, "version", "-f", "{{.Client.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return [client], {"DOCKER_BUILDKIT": "1"}, f"BuildKit ({client} {version})"
    pytest.fail("neither buildx nor a docker client with built-in BuildKit: BuildKit untested")


def test_the_other_builder_builds_it_too(images: Images) -> None:
    command, env, which = _other_builder()
    pinned = subprocess.run(
        ["sed", "-n", "s/^ARG PYTHON_IMAGE=//p", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The same base make image used: the upstream pin when present, else the Debian-built one.
    have_upstream = docker("image", "inspect", pinned, check=False).returncode == 0
    python_image = pinned if have_upstream else "queuejob-base:bookworm"
    tag = "queuejob:other-builder"
    result = subprocess.run(
        [*command, "build", "--build-arg", f"PYTHON_IMAGE={python_image}", "-t", tag, str(REPO)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"{which}:\n{result.stderr[-4000:]}"
    try:
        roles = docker("run", "--rm", tag, "--help").stdout
        assert "worker" in roles, roles
    finally:
        docker("rmi", tag, check=False)
