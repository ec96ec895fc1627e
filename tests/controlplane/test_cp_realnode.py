"""The real node (``localkube up --node=kubelet``): pods are containers run by kubelet + containerd.

With ``--nodes=N`` the same tests run on the N real nodes of ``multi_node`` (pods go to any node).

Needs root (this project's CI runs as root); see ``fixtures.realnode`` for when it is skipped.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fixtures.cluster import Cluster, wait_for
from fixtures.realnode import TEST_IMAGE, RealNodeCluster, format_memory
from localkube import hostnet
from localkube.cluster import NodeAddresses

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(300)]


@pytest.fixture
def node(real_node: RealNodeCluster) -> Cluster:
    real_node.local.check()
    return real_node.cluster


@pytest.fixture
def addresses(real_node: RealNodeCluster) -> NodeAddresses:
    return real_node.local.addresses


@pytest.fixture
def node_names(node: Cluster) -> list[str]:
    return sorted(n["metadata"]["name"] for n in node.kubectl_json("get", "nodes")["items"])


@pytest.fixture
def ns(node: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = (
        f"rn-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:6]}"
    )
    node.kubectl("create", "namespace", name)
    yield name
    node.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": TEST_IMAGE,
        "command": ["sh", "-c", script],
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def wait_phase(cluster: Cluster, namespace: str, name: str, phases: set[str]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj: dict[str, Any] = cluster.kubectl_json("get", "pod", name, "-n", namespace)
        return obj if obj["status"].get("phase") in phases else None

    return wait_for(f"pod {namespace}/{name} in {phases}", probe, timeout=120)


def test_cp_realnode_pod_is_a_container_with_logs(
    node: Cluster, ns: str, addresses: NodeAddresses
) -> None:
    # "$$$$": Kubernetes turns "$$" into "$" in commands, the shell then sees "$$" (its PID).
    script = "echo hello from $(hostname) pid=$$$$; cat /proc/1/cgroup | grep -m1 kubepods"
    apply(node, ns, pod("hello", script))
    obj = wait_phase(node, ns, "hello", {"Succeeded", "Failed"})

    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    status = obj["status"]["containerStatuses"][0]
    assert status["containerID"].startswith("containerd://")
    assert status["state"]["terminated"]["exitCode"] == 0
    pod_ip = ipaddress.ip_address(obj["status"]["podIP"])
    assert pod_ip in ipaddress.ip_network(addresses.pod_cidr)
    logs = node.kubectl("logs", "-n", ns, "hello").stdout
    # Its own PID namespace (the shell is PID 1) and a pod cgroup of the kubelet's.
    assert "hello from hello pid=1" in logs
    assert "kubepods" in logs


def test_cp_realnode_pod_reaches_api_server_through_kubernetes_service(
    node: Cluster, ns: str, addresses: NodeAddresses
) -> None:
    script = (
        "echo host=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; "
        "kubectl get --raw /version && "
        "kubectl auth whoami -o jsonpath='user={.status.userInfo.username}{\"\\n\"}'"
    )
    apply(node, ns, pod("api", script))
    obj = wait_phase(node, ns, "api", {"Succeeded", "Failed"})
    logs = node.kubectl("logs", "-n", ns, "api").stdout

    assert obj["status"]["phase"] == "Succeeded", logs
    assert f"host={addresses.service_ip}:443" in logs  # the kubernetes Service's ClusterIP
    assert '"gitVersion": "v1.35.4"' in logs
    assert f"user=system:serviceaccount:{ns}:default" in logs  # its token, verified over TLS


def test_cp_realnode_job_completes(node: Cluster, ns: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "count"},
        "spec": {
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {"spec": pod("x", "echo done by $(hostname)")["spec"]},
        },
    }
    apply(node, ns, job)
    node.kubectl(
        "wait", "-n", ns, "--for=condition=Complete", "job/count", "--timeout=150s", timeout=170
    )
    assert node.kubectl_json("get", "job", "count", "-n", ns)["status"]["succeeded"] == 2
    pods = node.kubectl_json("get", "pods", "-n", ns, "-l", "batch.kubernetes.io/job-name=count")
    names = [p["metadata"]["name"] for p in pods["items"]]
    assert len(names) == 2
    for name in names:
        assert f"done by {name}" in node.kubectl("logs", "-n", ns, name).stdout


def test_cp_realnode_restricted_pod_runs_confined(node: Cluster, ns: str) -> None:
    node.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    script = (
        "echo uid=$(id -u); grep -E '^(Seccomp|CapEff|NoNewPrivs):' /proc/self/status; "
        "touch /written 2>&1 || echo rootfs-read-only"
    )
    manifest = pod(
        "strict",
        script,
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        container={
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
        },
    )
    apply(node, ns, manifest)  # admitted by PodSecurity "restricted"
    obj = wait_phase(node, ns, "strict", {"Succeeded", "Failed"})
    logs = node.kubectl("logs", "-n", ns, "strict").stdout

    assert obj["status"]["phase"] == "Succeeded", logs
    assert "uid=10001" in logs
    assert "Seccomp:\t2" in logs  # a seccomp filter is on (RuntimeDefault)
    assert "CapEff:\t0000000000000000" in logs
    assert "NoNewPrivs:\t1" in logs
    assert "rootfs-read-only" in logs and "Read-only file system" in logs


def test_cp_realnode_memory_of_the_node(
    node: Cluster, real_node: RealNodeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Figures for the docs: resident memory of containerd, the kubelet, kube-proxy and CoreDNS
    (the pod start latency against the node agent: benchmarks/bench_podstart.py)."""
    memory = real_node.memory()
    with capsys.disabled():
        print(f"\nreal node memory: {format_memory(memory)}")
    nodes = [n.name + "-" for n in real_node.local.nodes] or [""]
    expected = {f"{n}{c}" for n in nodes for c in ("containerd", "kubelet", "kube-proxy")}
    assert set(memory) == expected | {"coredns"}, memory
    assert all(now > 0 for now, _ in memory.values()), memory


def test_cp_realnode_statefulset_gets_a_bound_volume(
    node: Cluster, ns: str, real_node: RealNodeCluster
) -> None:
    """StatefulSet controller + PV binder: the claim of the template binds a hostPath PV."""
    host_dir = real_node.local.state_dir / "volumes" / ns
    storage_class = f"manual-{ns}"
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pv-{ns}"},
        "spec": {
            "capacity": {"storage": "1Mi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"},
        },
    }
    node.kubectl("apply", "-f", "-", input=json.dumps(volume))
    template = pod("x", "hostname > /data/who; sleep 3600")
    template["spec"].pop("restartPolicy")
    template["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    template["spec"]["terminationGracePeriodSeconds"] = 0
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": template["spec"]},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": storage_class,
                        "resources": {"requests": {"storage": "1Mi"}},
                    },
                }
            ],
        },
    }
    try:
        apply(node, ns, statefulset)
        wait_phase(node, ns, "web-0", {"Running"})
        claim = node.kubectl_json("get", "pvc", "data-web-0", "-n", ns)
        assert claim["status"]["phase"] == "Bound"
        assert claim["spec"]["volumeName"] == f"pv-{ns}"
        who = wait_for("web-0 writes to the volume", lambda: (host_dir / "who").is_file())
        assert who and (host_dir / "who").read_text().strip() == "web-0"
    finally:
        node.kubectl("delete", "-n", ns, "statefulset/web", "--wait=false", check=False)
        node.kubectl("delete", "pv", f"pv-{ns}", "--wait=false", check=False)


def test_cp_realnode_daemonset_runs_on_the_node(
    node: Cluster, ns: str, node_names: list[str]
) -> None:
    template = pod("x", "sleep 3600")["spec"]
    template.pop("restartPolicy")
    template["terminationGracePeriodSeconds"] = 0
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": template},
        },
    }
    apply(node, ns, daemonset)
    status = wait_for(
        "DaemonSet agent ready on the node",
        lambda: (
            s
            if (s := node.kubectl_json("get", "ds", "agent", "-n", ns).get("status", {})).get(
                "numberReady"
            )
            == len(node_names)
            else None
        ),
    )
    assert status["desiredNumberScheduled"] == len(node_names)
    pods = node.kubectl_json("get", "pods", "-n", ns, "-l", "app=agent")["items"]
    assert sorted(p["spec"]["nodeName"] for p in pods) == node_names  # one on every node


def test_cp_realnode_cronjob_starts_jobs(node: Cluster, ns: str) -> None:
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": pod("x", "echo tick")["spec"]}}},
        },
    }
    apply(node, ns, cronjob)
    status = wait_for(
        "CronJob tick ran a Job to success",
        lambda: (
            node.kubectl_json("get", "cronjob", "tick", "-n", ns)
            .get("status", {})
            .get("lastSuccessfulTime")
        ),
        timeout=150,
        interval=2,
    )
    assert status
    jobs = node.kubectl_json("get", "jobs", "-n", ns)["items"]
    assert jobs and jobs[0]["metadata"]["ownerReferences"][0]["name"] == "tick"


def test_cp_realnode_cluster_dns_answers_service_names_only(
    node: Cluster, ns: str, addresses: NodeAddresses
) -> None:
    node.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
    web_ip = node.kubectl_json("get", "service", "web", "-n", ns)["spec"]["clusterIP"]
    script = (
        "cat /etc/resolv.conf; nslookup kubernetes.default.svc.cluster.local; "
        f"nslookup web.{ns}.svc.cluster.local; nslookup web; "
        "nslookup example.com || echo no-upstream"
    )
    apply(node, ns, pod("dns", script))
    obj = wait_phase(node, ns, "dns", {"Succeeded", "Failed"})
    logs = node.kubectl("logs", "-n", ns, "dns").stdout

    assert obj["status"]["phase"] == "Succeeded", logs
    assert f"nameserver {addresses.dns_ip}" in logs  # the kubelet's clusterDNS: kube-dns
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in logs
    assert f"Name:\tkubernetes.default.svc.cluster.local\nAddress: {addresses.service_ip}" in logs
    assert f"Name:\tweb.{ns}.svc.cluster.local\nAddress: {web_ip}" in logs
    assert logs.count(f"Address: {web_ip}") >= 2, 'the search path resolves a bare "web"'
    assert "can't find example.com: SERVFAIL" in logs and "no-upstream" in logs


def _egress_drops(chain: str) -> int:
    listing = hostnet.run("iptables", "-w", "-t", "mangle", "-L", chain, "-v", "-x", "-n")
    return int(listing.stdout.splitlines()[2].split()[0])  # the DROP rule's packet counter


def test_cp_realnode_pods_cannot_send_off_the_machine(
    node: Cluster, ns: str, addresses: NodeAddresses
) -> None:
    """The egress guard drops what a pod routes off the machine. The probe address (TEST-NET-2)
    is routed into a link of the cluster's own (lkapi0, a bridge without ports, or the nodes'
    bridge), so nothing could leave even without it."""
    chain, link = addresses.egress_chain, addresses.local_link
    forward = hostnet.run("iptables", "-w", "-t", "mangle", "-S", "FORWARD").stdout.splitlines()
    assert f"-A FORWARD -j {chain}" in forward, forward
    # before every rule but the guards of other clusters on this machine (their own chains)
    others = forward[1 : forward.index(f"-A FORWARD -j {chain}")]
    assert all(rule.startswith("-A FORWARD -j LOCALKUBE") for rule in others), forward
    probe = "198.51.100.7"
    hostnet.run("ip", "route", "add", f"{probe}/32", "dev", link)
    try:
        before = _egress_drops(chain)
        apply(
            node, ns, pod("out", f"nc -w 2 {probe} 80 </dev/null && echo reached || echo blocked")
        )
        wait_phase(node, ns, "out", {"Succeeded", "Failed"})
        logs = node.kubectl("logs", "-n", ns, "out").stdout
        assert "blocked" in logs and "reached" not in logs, logs
        assert _egress_drops(chain) > before, "the pod's packets were dropped by the guard"
    finally:
        hostnet.run("ip", "route", "del", f"{probe}/32", "dev", link, check=False)


def test_cp_realnode_runs_the_project_image_restricted(
    ns: str, deployed_real_node: RealNodeCluster
) -> None:
    """queuejob:dev as ``make deploy-local`` put it into containerd (``docker save``, ``ctr
    import``; the session's deployment, shared with the deploy-path and e2e tests) runs as a
    restricted pod without a pull."""
    node = deployed_real_node.cluster
    image = "queuejob:dev"
    node.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    script = "import os, queuejob, workqueue; print('imports ok as uid', os.getuid())"
    manifest = pod(
        "qj",
        "",
        securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        container={
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["python3", "-c", script],
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        },
    )
    apply(node, ns, manifest)
    obj = wait_phase(node, ns, "qj", {"Succeeded", "Failed"})
    logs = node.kubectl("logs", "-n", ns, "qj").stdout
    assert obj["status"]["phase"] == "Succeeded", logs
    assert "imports ok as uid 10001" in logs  # the image's own numeric non-root user
