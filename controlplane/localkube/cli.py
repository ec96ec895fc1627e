"""``localkube up|down|env|status``: a local Kubernetes control plane for development and tests.

- ``up``: start etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the node agent
  in the background (owned by a supervisor process), wait until ready, print timing and how to use
  it. Exit status 1 (and the failing component's log tail) when it cannot start.
  ``up --node=kubelet`` runs a real node instead of the node agent: containerd, kubelet and
  kube-proxy (root only; see :mod:`localkube.realnode`). ``up --nodes=N`` runs N such nodes,
  each in a network namespace of its own (root only; see :mod:`localkube.multinode`).
- ``env``: shell lines putting this checkout's kubectl first on PATH and setting KUBECONFIG.
- ``status``: each component's pid, liveness and resident memory; exit status 1 if one is down.
- ``down``: stop everything (SIGTERM, then SIGKILL), sweep leftovers (a real node's pods, mounts,
  cgroups, links and iptables chains included), remove the state directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from localkube import paths, realnode
from localkube.cluster import NODE_KINDS, NodeKind
from localkube.process import MARKER_ENV, alive, is_ours, rss_bytes, sweep, tail, terminate_pids
from localkube.state import ClusterState

UP_TIMEOUT = 180.0


def _running(state: ClusterState | None) -> bool:
    return state is not None and is_ours(state.supervisor_pid, state.cluster_id)


def cmd_up(
    state_dir: Path, node: NodeKind = "agent", nodes: int = 0, *, show_use: bool = True
) -> int:
    state = ClusterState.load(state_dir)
    if _running(state):
        print(f"localkube: already running (state in {state_dir}); `localkube down` stops it")
        return 0
    paths.require_binary()
    if nodes < 0 or nodes > 100:
        print(f"localkube: --nodes={nodes}: give 1 to 100 (0: one node, --node)", file=sys.stderr)
        return 1
    if (node == "kubelet" or nodes) and (reason := realnode.unavailable_reason()):
        print(f"localkube: real nodes are not possible here: {reason}", file=sys.stderr)
        return 1
    if state is not None:  # stale state of a dead cluster: clean it first
        sweep(state.cluster_id)
    shutil.rmtree(state_dir, ignore_errors=True)
    (state_dir / "logs").mkdir(parents=True)
    cluster_id = uuid.uuid4().hex
    log_path = state_dir / "logs" / "localkube.log"
    began = time.monotonic()
    with log_path.open("ab") as out:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localkube",
                "supervise",
                "--state-dir",
                str(state_dir),
                f"--node={node}",
                f"--nodes={nodes}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, MARKER_ENV: cluster_id},
            start_new_session=True,
        )
    shown = 0

    def show_new_lines() -> None:
        nonlocal shown
        lines = log_path.read_text(errors="replace").splitlines()
        for line in lines[shown:]:
            print(line, flush=True)
        shown = len(lines)

    while True:
        state = ClusterState.load(state_dir)
        show_new_lines()
        if state is not None and state.phase == "ready":
            break
        if supervisor.poll() is not None or (state is not None and state.phase == "failed"):
            with contextlib.suppress(subprocess.TimeoutExpired):
                supervisor.wait(30)
            show_new_lines()
            print(
                f"localkube: start failed; state kept in {state_dir} (run `localkube down`)",
                file=sys.stderr,
            )
            return 1
        if time.monotonic() - began > UP_TIMEOUT:
            print(f"localkube: not ready after {UP_TIMEOUT:.0f}s; see {log_path}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"localkube: up in {time.monotonic() - began:.1f}s (API server {state.server})")
    print(f"localkube: kubeconfig {state.kubeconfig}")
    if show_use:
        print('localkube: use it with:  eval "$(make cluster-env)"  (or `.venv/bin/localkube env`)')
    return 0


def cmd_env(state_dir: Path) -> int:
    kubeconfig = state_dir / "kubeconfig"
    print(f'export PATH={shlex.quote(str(paths.kubectl_binary().parent))}:"$PATH"')
    print(f"export KUBECONFIG={shlex.quote(str(kubeconfig))}")
    if not kubeconfig.exists():
        print(
            "# note: no cluster is running yet; start it with `make cluster-up`",
        )
    return 0


def cmd_status(state_dir: Path) -> int:
    state = ClusterState.load(state_dir)
    if state is None:
        print(f"localkube: not running (no state in {state_dir})")
        return 1
    healthy = _running(state) and state.phase == "ready"
    print(f"supervisor  pid {state.supervisor_pid}  phase {state.phase}  {state.server}")
    total = 0
    for name, pid in state.components.items():
        up = is_ours(pid, state.cluster_id)
        rss = rss_bytes(pid) if up else 0
        total += rss
        print(
            f"  {name:<24} pid {pid:<8} {'running' if up else 'DOWN':<8} rss {rss / 2**20:7.1f} MiB"
        )
        if not up:
            healthy = False
            print(f"    last lines of {state.logs.get(name)}:")
            print("    " + tail(Path(state.logs.get(name, "")), 15).replace("\n", "\n    "))
    print(f"  {'total':<24} {'':<22} rss {total / 2**20:7.1f} MiB")
    if state.startup_seconds is not None:
        print(f"startup: {state.startup_seconds:.1f}s to API ready + node Ready + controllers")
    for failure in state.failures:
        print(failure)
    return 0 if healthy else 1


def cmd_down(state_dir: Path) -> int:
    state = ClusterState.load(state_dir)
    if state is None:
        # A multi-node run killed before it wrote its state (or half removed) may still hold a
        # slot with its namespaces, bridge and chains: the slot record names this directory.
        for problem in _cleanup_multinode(state_dir, only_if_dead=True):
            print(f"localkube: node cleanup: {problem}")
        if state_dir.exists():
            shutil.rmtree(state_dir, ignore_errors=True)
        print("localkube: not running")
        return 0
    if is_ours(state.supervisor_pid, state.cluster_id):
        print(f"localkube: stopping (supervisor pid {state.supervisor_pid})")
        terminate_pids([state.supervisor_pid], grace=30.0)
    leftovers = sweep(state.cluster_id)
    if leftovers:
        print(f"localkube: stopped {len(leftovers)} leftover process(es): {leftovers}")
    if state.nodes:  # normally done by the supervisor; here if it died first
        for problem in _cleanup_multinode(state_dir):
            print(f"localkube: node cleanup: {problem}")
    elif state.node == "kubelet":  # likewise
        for problem in realnode.cleanup_if_owner(state_dir, paths.kube_local_binary()):
            print(f"localkube: node cleanup: {problem}")
    stray = [
        pid for pid in state.components.values() if alive(pid) and is_ours(pid, state.cluster_id)
    ]
    shutil.rmtree(state_dir, ignore_errors=True)
    if stray:
        print(f"localkube: could not stop {stray}", file=sys.stderr)
        return 1
    print(f"localkube: down; removed {state_dir}")
    return 0


def _cleanup_multinode(state_dir: Path, *, only_if_dead: bool = False) -> list[str]:
    """Leftovers of a multi-node run whose supervisor died (its slot is still recorded);
    ``only_if_dead``: not while the slot's holder (a run still starting up) is alive."""
    import json

    from localkube import netplan
    from localkube.cluster import cleanup_multinode

    try:
        slot = int(json.loads((state_dir / "netplan.json").read_text())["slot"])
    except (OSError, ValueError, KeyError):
        held = [  # no netplan.json: a dead run's slot record may still name this directory
            s
            for s in range(netplan.SLOTS)
            if (r := netplan.holder(s)) is not None and r.get("state_dir") == str(state_dir)
        ]
        if not held:
            return []
        slot = held[0]
    record = netplan.holder(slot)
    if record is not None and record.get("state_dir") != str(state_dir):
        return []  # the slot went to another run meanwhile: its state is not ours to touch
    if only_if_dead and record is not None and netplan.holder_alive(record):
        return []
    plan = netplan.NetPlan(slot)
    problems = cleanup_multinode(state_dir, plan, paths.kube_local_binary())
    netplan.release_slot(plan, state_dir)
    return problems


def cmd_deploy(state_dir: Path, manifests: Path, *, remove: bool) -> int:
    """``make deploy``/``undeploy`` on the running real node of ``state_dir``."""
    from localkube import containerd, deploy

    state = ClusterState.load(state_dir)
    layouts = [containerd.ContainerdLayout(state_dir / "containerd")]
    if state is not None and state.nodes:
        layouts = [
            containerd.ContainerdLayout(directory / "containerd")
            for directory in sorted((state_dir / "nodes").iterdir())
        ]
    if not _running(state) or not all(layout.socket.exists() for layout in layouts):
        print(
            f"localkube: no running real node in {state_dir}: `make cluster-up NODE=kubelet` first",
            file=sys.stderr,
        )
        return 1
    kubectl = [str(paths.kubectl_binary()), f"--kubeconfig={state_dir / 'kubeconfig'}"]

    def import_everywhere(archive: Path) -> None:
        for layout in layouts:
            containerd.import_image(layout, archive)

    try:
        if remove:
            deploy.undeploy(kubectl, manifests)
            print(f"localkube: {manifests} removed (static volumes are retained)")
            return 0
        times = deploy.deploy(
            kubectl,
            manifests,
            import_everywhere,
            progress=lambda message: print(f"==> {message}", flush=True),
        )
    except RuntimeError as exc:
        print(f"localkube: {exc}", file=sys.stderr)
        return 1
    steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in times.steps.items())
    print(f"==> deployed in {times.total:.1f}s ({steps}). KUBECONFIG={state_dir / 'kubeconfig'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="localkube", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command", choices=["up", "down", "env", "status", "deploy", "undeploy", "supervise"]
    )
    parser.add_argument(
        "--node",
        choices=NODE_KINDS,
        default="agent",
        help="what runs pods (up): the node agent (default, no root needed), a real kubelet "
        "with containerd (root), or none",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=0,
        help="up: run N real nodes (kubelet + containerd + kube-proxy), each in a network "
        "namespace of its own (root); 0 (default): one node as --node says",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"state directory (default {paths.default_state_dir()})",
    )
    parser.add_argument(
        "--manifests",
        type=Path,
        default=None,
        help="deploy/undeploy: the kustomization (default manifests/deploy-local)",
    )
    args = parser.parse_args(argv)
    state_dir = (args.state_dir or paths.default_state_dir()).absolute()
    try:
        if args.command == "supervise":
            from localkube.supervisor import supervise

            return supervise(state_dir, args.node, args.nodes)
        if args.command == "up":
            return cmd_up(state_dir, args.node, args.nodes)
        if args.command in ("deploy", "undeploy"):
            manifests = args.manifests or paths.project_root() / "manifests" / "deploy-local"
            return cmd_deploy(state_dir, manifests, remove=args.command == "undeploy")
        command = {"down": cmd_down, "env": cmd_env, "status": cmd_status}
        return command[args.command](state_dir)
    except FileNotFoundError as exc:
        print(f"localkube: {exc}", file=sys.stderr)
        return 1
