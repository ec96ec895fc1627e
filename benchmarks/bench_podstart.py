"""Pod start latency: create -> Running on the real node (kubelet + containerd) vs the node agent.

``.venv/bin/python benchmarks/bench_podstart.py [--pods N]`` (root, for the real node) starts a
local control plane with the node agent, creates N pods one at a time (``kubectl apply``, then
polls the pod every 0.05 s until its phase is Running) and stops it; then the same on a real node
(``localkube up --node=kubelet``). On the real node the pods run the project image
``queuejob:dev`` (taken from Docker and imported into containerd, as ``make deploy`` does; the
node agent runs that image's pods as local processes) and, for a floor without a Python start-up
cost, a static-busybox image built here. Prints each series, the medians and the ratio real
node / node agent. A measurement on a shared machine: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from localkube import paths, realnode
from localkube.cluster import LocalCluster
from localkube.deploy import import_docker_images
from localkube.oci_archive import File, ImageSpec, Symlink, write_oci_archive

IMAGE = "queuejob:dev"
BUSYBOX_IMAGE = "localhost/bench/busybox:podstart"
NAMESPACE = "bench-podstart"


def kubectl(cluster: LocalCluster, *args: str, stdin: str | None = None) -> str:
    argv = [str(paths.kubectl_binary()), f"--kubeconfig={cluster.kubeconfig}", *args]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {done.stderr.strip()}")
    return done.stdout


def pod(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": image, "command": ["sleep", "120"],
                            "imagePullPolicy": "IfNotPresent"}],
        },
    }  # fmt: skip


def latencies(cluster: LocalCluster, image: str, count: int, prefix: str) -> list[float]:
    """Seconds from ``kubectl apply`` to phase Running, one pod at a time (then deleted)."""
    seconds = []
    for i in range(count):
        name = f"{prefix}-{i}"
        began = time.monotonic()
        kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(pod(name, image)))
        deadline = began + 120
        while True:
            phase = json.loads(kubectl(cluster, "get", "pod", name, "-n", NAMESPACE, "-o", "json"))[
                "status"
            ].get("phase")
            if phase == "Running":
                break
            if phase in ("Failed", "Succeeded") or time.monotonic() > deadline:
                raise RuntimeError(f"pod {name}: phase {phase}")
            time.sleep(0.05)
        seconds.append(time.monotonic() - began)
        kubectl(cluster, "delete", "pod", name, "-n", NAMESPACE, "--wait=false")
    return seconds


def busybox_archive(archive: Path) -> None:
    """A two-applet image from Debian's static busybox (``sleep`` and ``sh``)."""
    files: dict[str, File | Symlink] = {
        "/bin/busybox": File(Path("/bin/busybox").read_bytes(), 0o755)
    }
    files.update({f"/bin/{a}": Symlink("busybox") for a in ("sh", "sleep")})
    spec = ImageSpec(name=BUSYBOX_IMAGE, files=files, cmd=("sh",), env=("PATH=/bin",))
    write_oci_archive(spec, archive)


def show(label: str, values: list[float]) -> float:
    median = statistics.median(values)
    print(f"  {label:<34} median {median:5.2f}s  {[round(v, 2) for v in values]}", flush=True)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=7, help="pods per series (default 7)")
    args = parser.parse_args()

    print(f"pod start latency, create -> Running, {args.pods} pods one at a time:", flush=True)
    with LocalCluster() as agent:
        kubectl(agent, "create", "namespace", NAMESPACE)
        kubectl(agent, "wait", "--for=create", "serviceaccount/default", "-n", NAMESPACE)
        agent_median = show(f"node agent, {IMAGE}", latencies(agent, IMAGE, args.pods, "agent"))

    reason = realnode.unavailable_reason()
    if reason:
        print(f"  real node: not measured ({reason})")
        return
    with LocalCluster(node="kubelet") as real:
        kubectl(real, "create", "namespace", NAMESPACE)
        kubectl(real, "wait", "--for=create", "serviceaccount/default", "-n", NAMESPACE)
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "busybox.tar"
            busybox_archive(archive)
            real.import_image(archive)
        import_docker_images((IMAGE,), real.import_image)
        real_median = show(f"real node, {IMAGE}", latencies(real, IMAGE, args.pods, "real"))
        floor = show("real node, static busybox", latencies(real, BUSYBOX_IMAGE, args.pods, "bb"))
    print(f"  ratio real node / node agent ({IMAGE}): {real_median / agent_median:.2f}x; "
          f"busybox on the real node / node agent: {floor / agent_median:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
