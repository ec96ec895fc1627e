"""``make deploy`` on the real node: manifests/deploy-local with its real probes, in containers.

The session's real node (``fixtures.realnode``), deployed once per session by
:func:`localkube.deploy.deploy`, the code behind ``make deploy`` (DEPLOY_TARGET=local); under
``--cluster=local-kubelet`` the e2e tests ran on this same deployment before (with the test
settings of ``fixtures.operator`` set on the operator's Deployment). Needs root and Docker's two
images (skipped with the reason where no Docker engine starts).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mf_docker import Images

from fixtures.cluster import Cluster, wait_for
from fixtures.realnode import RealNodeCluster
from localkube import containerd, deploy, storage
from queuejob import naming
from queuejob import settings as qs

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(420)]
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "deploy-local"
NS = deploy.NAMESPACE


@pytest.fixture
def node(deployed_real_node: RealNodeCluster) -> Cluster:
    """The session's real node with manifests/deploy-local deployed (``deployed_real_node``)."""
    deployed_real_node.local.check()
    return deployed_real_node.cluster


@pytest.fixture
def ns(node: Cluster) -> Iterator[str]:
    """A namespace enforcing Pod Security "restricted", for QueueJobs and their workers."""
    name = f"rn-deploy-{uuid.uuid4().hex[:6]}"
    node.kubectl("create", "namespace", name)
    node.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    node.kubectl("delete", "queuejobs", "--all", "-n", name, "--timeout=60s", check=False)
    node.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pods(cluster: Cluster, namespace: str, *selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.kubectl_json("get", "pods", "-n", namespace, *selector)[
        "items"
    ]
    return items


def test_mf_deploy_realnode_pods_restricted_ready_with_real_probes(node: Cluster) -> None:
    labels = node.kubectl_json("get", "namespace", NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"  # admitted under it
    running = pods(node, NS)
    assert {p["metadata"]["labels"]["app.kubernetes.io/name"] for p in running} >= {
        "redis",
        "queuejob-operator",
    }
    for obj in running:
        spec, status = obj["spec"], obj["status"]
        assert status["phase"] == "Running", status
        (container,) = status["containerStatuses"]
        assert container["ready"] and container["containerID"].startswith("containerd://")
        assert container["restartCount"] == 0, f"{obj['metadata']['name']} restarted: {status}"
        probes = spec["containers"][0]
        assert "readinessProbe" in probes and "livenessProbe" in probes
        assert probes["securityContext"]["readOnlyRootFilesystem"] is True


def test_mf_deploy_realnode_redis_volume_is_a_static_pv_it_writes(
    node: Cluster, real_node: RealNodeCluster
) -> None:
    claim = node.kubectl_json("get", "pvc", "redis-data", "-n", NS)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == storage.CLASS_NAME  # the default class
    index = int(claim["spec"]["volumeName"].removeprefix("localkube-pv-"))
    data = storage.volume_dir(real_node.local.state_dir, index)
    # Redis (uid 999) writes its append-only files into the hostPath directory.
    wait_for("redis's appendonlydir on the volume", lambda: (data / "appendonlydir").is_dir())
    assert (data / "appendonlydir").stat().st_uid == 999


def test_mf_deploy_realnode_operator_uses_its_token_and_redis_service_dns(node: Cluster) -> None:
    operators = pods(node, NS, "-l", "app.kubernetes.io/name=queuejob-operator")
    assert len(operators) == 2, [p["metadata"]["name"] for p in operators]  # leader + standby
    lease = node.kubectl_json("get", "lease", "queuejob-operator", "-n", NS)
    holder = lease["spec"]["holderIdentity"]
    (operator,) = [p for p in operators if holder.startswith(p["metadata"]["name"] + "_")]
    assert operator["spec"]["serviceAccountName"] == "queuejob-operator"
    projected = [
        source["serviceAccountToken"]
        for volume in operator["spec"]["volumes"]
        for source in volume.get("projected", {}).get("sources", [])
        if "serviceAccountToken" in source
    ]
    assert projected, "the operator's API token is a projected ServiceAccount token"
    env = {e["name"]: e.get("value") for e in operator["spec"]["containers"][0]["env"]}
    assert env["QUEUEJOB_REDIS_URL"].startswith("redis://redis.queuejob-system.svc:")
    logs = node.kubectl("logs", "-n", NS, operator["metadata"]["name"]).stdout
    assert "Activity 'handlers' succeeded" in logs or "Initial authentication has finished" in logs
    assert "AuthenticationError" not in logs and "Name or service not known" not in logs, logs


def queuejob(name: str, namespace: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "workqueue.example.com/v1alpha1",
            "kind": "QueueJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def wait_phase(node: Cluster, ns: str, name: str, timeout: float = 240) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status: dict[str, Any] = node.kubectl_json("get", "queuejob", name, "-n", ns).get(
            "status", {}
        )
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    return wait_for(f"QueueJob {ns}/{name} finished", done, timeout=timeout)


def test_mf_deploy_realnode_queuejob_succeeds_in_containers(node: Cluster, ns: str) -> None:
    items = [f"i-{n}" for n in range(6)]
    node.kubectl("apply", "-f", "-", input=queuejob("ok", ns, items=items, parallelism=2))
    status = wait_phase(node, ns, "ok")

    assert status["phase"] == "Succeeded", status
    assert status["counts"]["succeeded"] == len(items) and status["counts"]["failed"] == 0
    # The QueueJob is Succeeded once its queue is done; its last worker may still be exiting.
    node.kubectl("wait", "--for=condition=Complete", f"job/{status['jobName']}", "-n", ns,
                 "--timeout=120s", timeout=150)  # fmt: skip
    workers = pods(node, ns, "-l", f"batch.kubernetes.io/job-name={status['jobName']}")
    assert workers
    for obj in workers:
        (container,) = obj["status"]["containerStatuses"]
        assert container["containerID"].startswith("containerd://")
        assert container["state"]["terminated"]["exitCode"] == 0


def test_mf_deploy_realnode_killed_workers_lose_and_double_count_nothing(
    node: Cluster, ns: str, real_node: RealNodeCluster
) -> None:
    items = [f"k-{n}" for n in range(12)]
    # Each item ignores SIGTERM and takes 2 s: a killed worker's item comes back by lease expiry.
    job = queuejob(
        "kill",
        ns,
        items=items,
        parallelism=2,
        leaseSeconds=3,
        worker={"command": ["sh", "-c", "trap '' TERM; sleep 2"]},
    )
    node.kubectl("apply", "-f", "-", input=job)

    def two_running() -> list[dict[str, Any]] | None:
        running = [
            p
            for p in pods(node, ns, "-l", "batch.kubernetes.io/job-name")
            if p["status"].get("phase") == "Running"
            and p["status"]["containerStatuses"][0].get("state", {}).get("running")
        ]
        return running if len(running) >= 2 else None

    def two_working() -> list[dict[str, Any]] | None:
        # The SIGKILL must hit a worker that holds a lease: one that has finished an item leases
        # the next at once (items are pending for ~10 s more), one still starting holds none.
        running = two_running()
        if not running:
            return None
        working = [
            p
            for p in running
            if "done (attempt" in node.kubectl("logs", "-n", ns, p["metadata"]["name"]).stdout
        ]
        if not working:
            return None
        victim = working[0]
        other = next(p for p in running if p["metadata"]["name"] != victim["metadata"]["name"])
        return [other, victim]

    first, second = wait_for(
        "two running workers, one past its first item", two_working, timeout=120
    )
    node.kubectl("delete", "pod", "-n", ns, first["metadata"]["name"], "--force",
                 "--grace-period=0")  # fmt: skip
    container_id = second["status"]["containerStatuses"][0]["containerID"]
    if real_node.local.nodes:  # several nodes: the containerd of the pod's node
        layout = real_node.local.node_by_name(second["spec"]["nodeName"]).layout
    else:
        assert real_node.local.real_node is not None
        layout = real_node.local.real_node.layout
    kill = containerd.ctr(
        layout, "task", "kill", "--signal", "SIGKILL", container_id.split("://")[1]
    )
    killed = subprocess.run(kill, capture_output=True, text=True, check=False, timeout=30)
    assert killed.returncode == 0, killed.stderr

    def exit_137() -> bool:
        obj = node.kubectl_json("get", "pod", "-n", ns, second["metadata"]["name"])
        status = obj["status"]["containerStatuses"][0]
        ends = [status.get("state", {}), status.get("lastState", {})]
        return any(end.get("terminated", {}).get("exitCode") == 137 for end in ends)

    wait_for("the kubelet reports the SIGKILLed container's exit 137", exit_137, timeout=60)

    status = wait_phase(node, ns, "kill")
    assert status["phase"] == "Succeeded", status
    counts = status["counts"]
    assert counts["total"] == len(items)
    assert counts["succeeded"] == len(items), counts  # each item counted exactly once
    assert counts["failed"] == 0 and counts["retries"] >= 1, counts


FINE = Path(__file__).resolve().parents[2] / "manifests" / "fine-parallel"
FRUITS = ("apple", "banana", "cherry", "date", "fig", "grape", "lemon", "melon", "orange")


def test_mf_deploy_realnode_docs_task_as_written_nine_of_nine(
    node: Cluster, ns: str, images: Images
) -> None:
    """manifests/fine-parallel unchanged (the docs' 10 s per item, 10 s lease, parallelism 2),
    except the Redis pod's image: queuejob-redis:dev, as manifests/deploy-local swaps it."""
    # The README's command for this node: the pod as written, with only its image swapped.
    swapped = node.kubectl("set", "image", "--local", "-f", str(FINE / "redis-pod.yaml"),
                           f"*={images.redis}", "-o", "json").stdout  # fmt: skip
    (container,) = json.loads(swapped)["spec"]["containers"]
    assert container["image"] == images.redis
    node.kubectl("create", "secret", "generic", "redis-auth", "-n", ns,
                 f"--from-literal=password={uuid.uuid4().hex}")  # fmt: skip
    node.kubectl("apply", "-n", ns, "-f", "-", input=swapped)
    node.kubectl("apply", "-n", ns, "-f", str(FINE / "redis-service.yaml"))
    node.kubectl("wait", "--for=condition=Ready", "pod/redis-master", "-n", ns,
                 "--timeout=120s", timeout=150)  # fmt: skip
    for manifest, job in (("fill-queue-job.yaml", "fill-queue"), ("job.yaml", "job-wq-2")):
        node.kubectl("apply", "-n", ns, "-f", str(FINE / manifest))
        node.kubectl("wait", "--for=condition=Complete", f"job/{job}", "-n", ns,
                     "--timeout=240s", timeout=270)  # fmt: skip

    status = node.kubectl_json("get", "job", "job-wq-2", "-n", ns)["status"]
    assert status.get("succeeded", 0) >= 1 and status.get("failed", 0) == 0, status
    workers = pods(node, ns, "-l", "app=job-wq-2")
    assert len(workers) >= 2, "parallelism 2 starts two worker containers"
    logs = "".join(node.kubectl("logs", "-n", ns, p["metadata"]["name"]).stdout for p in workers)
    done = [fruit for fruit in FRUITS if f"item '{fruit}' done" in logs]
    assert len(done) == 9, f"{len(done)}/9 done:\n{logs}"
    assert all(logs.count(f"item '{fruit}' done") == 1 for fruit in FRUITS), logs


def _lease_holder_pod(node: Cluster) -> tuple[str, str]:
    """(holder identity, its pod's name) of the operator's leader-election Lease."""
    lease = node.kubectl_json("get", "lease", "queuejob-operator", "-n", NS)
    identity = str(lease["spec"].get("holderIdentity") or "")
    return identity, identity.rpartition("_")[0]


def test_mf_deploy_realnode_leader_pod_force_deleted_standby_takes_over(
    node: Cluster, ns: str
) -> None:
    """Issue 11 on real containers: ``kubectl delete pod --force`` of the Lease holder (2
    replicas). The standby takes the Lease within the lease duration + two retry periods (+ slack
    for this shared machine), and QueueJobs created before, during and after the failover all
    succeed with every item counted once and exactly one Job each (none stuck, none provisioned
    twice)."""
    deployment = node.kubectl_json("get", "deployment", "queuejob-operator", "-n", NS)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    settings = qs.from_env(env)
    bound = settings.leader_election_lease_duration + 2 * settings.leader_election_retry_period + 5
    items = {name: [f"{name}-{n}" for n in range(8)] for name in ("before", "during", "after")}

    def create(name: str) -> None:
        node.kubectl("apply", "-f", "-", input=queuejob(
            name, ns, items=items[name], parallelism=2,
            worker={"env": [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.5"}]},
        ))  # fmt: skip

    create("before")
    wait_for(
        "QueueJob 'before' Running",
        lambda: (
            node.kubectl_json("get", "queuejob", "before", "-n", ns).get("status", {}).get("phase")
            == "Running"
        ),
        timeout=120,
    )
    old_identity, old_pod = _lease_holder_pod(node)
    assert old_pod, old_identity
    node.kubectl("delete", "pod", old_pod, "-n", NS, "--force", "--grace-period=0")
    deleted = time.monotonic()
    create("during")

    def new_holder() -> str | None:
        _, pod = _lease_holder_pod(node)
        if not pod or pod == old_pod:
            return None
        found = node.kubectl("get", "pod", pod, "-n", NS, check=False)
        return pod if found.returncode == 0 else None

    new_pod = wait_for(f"a new Lease holder within {bound:.0f}s", new_holder, timeout=bound)
    print(f"\nleader pod force-deleted: {new_pod} holds the Lease "
          f"{time.monotonic() - deleted:.1f}s later (bound {bound:.0f}s)")  # fmt: skip
    create("after")

    for name, names in items.items():
        status = wait_phase(node, ns, name)
        assert status["phase"] == "Succeeded", (name, status)
        counts = status["counts"]
        assert counts["total"] == counts["succeeded"] == len(names), (name, counts)
        assert counts["failed"] == 0, (name, counts)
    jobs = node.kubectl_json("get", "jobs", "-n", ns)["items"]
    owners = sorted(j["metadata"]["labels"].get(naming.QUEUEJOB_LABEL, "") for j in jobs)
    assert owners == sorted(items), f"one Job per QueueJob: {owners}"
    wait_for(
        "two operator replicas again",
        lambda: len(pods(node, NS, "-l", "app.kubernetes.io/name=queuejob-operator")) == 2,
        timeout=120,
    )
