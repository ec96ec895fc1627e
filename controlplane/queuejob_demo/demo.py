"""``python -m queuejob_demo`` (``make demo``): the QueueJob operator end to end, on this machine.

1. brings up a local control plane (``localkube.LocalCluster``: etcd, kube-apiserver,
   controller-manager, scheduler and the node agent, which runs the worker pods as local
   processes) and a ``redis-server`` with a password, all on 127.0.0.1;
2. applies the QueueJob CRD and starts the operator (``queuejob operator``);
3. applies ``manifests/examples/retries-and-poison.yaml``: items that fail once, one poison item;
4. shows live progress from the QueueJob's status until it finishes (phase Failed: the poison
   item is dead-lettered);
5. "fixes" the poison item (the QueueJob's worker env now lists it in
   ``QUEUEJOB_DEMO_FIXED_ITEMS``, as a fixed worker image would handle it) and redrives the
   dead letters with ``kubectl queuejob redrive --all``: the operator re-creates the Job and the
   QueueJob ends Succeeded (live progress again, then ``kubectl queuejob status``);
6. prints a summary (phase, counts, dead letters, duration, the Job's pods) and tears everything
   down, also on Ctrl-C, SIGTERM or SIGHUP. ``--keep`` leaves it all running until Ctrl-C.
   ``--no-redrive`` stops after step 4.

Exit status: 0 when the QueueJob finished in the phase the example documents (Failed, then
Succeeded after the redrive; any finished phase for a custom ``--manifest``), 1 otherwise,
128 + the signal number when interrupted (130 on Ctrl-C, 143 on SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from queuejob_demo import kube as demo_kube
from queuejob_demo import view as demo_view
from queuejob_demo.stack import OperatorProcess

DEFAULT_MANIFEST = demo_kube.EXAMPLES_DIR / "retries-and-poison.yaml"
#: The phase the default example reaches first: its poison item is dead-lettered.
DEFAULT_EXPECTED_PHASE = "Failed"
#: The phase it ends in once the poison item is fixed and redriven.
REDRIVEN_EXPECTED_PHASE = "Succeeded"


def say(message: str) -> None:
    """A step of the demo, on its own line."""
    print(f"==> {message}", flush=True)


def _shown(path: pathlib.Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    try:
        return str(path.relative_to(demo_kube.PROJECT_ROOT))
    except ValueError:
        return str(path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m queuejob_demo",
        description="Run the QueueJob operator on a local control plane with live progress.",
    )
    parser.add_argument(
        "--manifest",
        type=pathlib.Path,
        default=DEFAULT_MANIFEST,
        help="QueueJob manifest to apply (may contain ConfigMaps too) [%(default)s]",
    )
    parser.add_argument("--namespace", default="queuejob-demo", help="namespace [%(default)s]")
    parser.add_argument(
        "--kubeconfig",
        "--cluster-kubeconfig",
        dest="kubeconfig",
        type=pathlib.Path,
        help="use this running cluster (e.g. `make cluster-up`'s) instead of starting one; "
        "its pods must be able to reach 127.0.0.1 (localkube's node agent)",
    )
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    parser.add_argument(
        "--no-redrive",
        dest="redrive",
        action="store_false",
        help="stop at the Failed state (no fix and redrive of the poison item)",
    )
    parser.add_argument(
        "--timeout", type=float, default=240.0, help="give up after this many seconds [240]"
    )
    args = parser.parse_args(argv)
    args.manifest = args.manifest.resolve()
    if args.kubeconfig is not None:
        args.kubeconfig = args.kubeconfig.resolve()  # printed for use from another directory
    return args


@contextlib.contextmanager
def local_cluster(kubeconfig: pathlib.Path | None) -> Iterator[pathlib.Path]:
    """Yield a kubeconfig: the given one, or that of a LocalCluster started (and stopped) here."""
    if kubeconfig is not None:
        demo_kube.check_reachable(kubeconfig)
        say(f"using the cluster of {kubeconfig}")
        yield kubeconfig
        return
    from localkube.cluster import LocalCluster  # the control plane is only needed here

    say("starting the local control plane (etcd, kube-apiserver, controllers, node agent)")
    cluster = LocalCluster(progress=lambda msg: print(f"    {msg}", flush=True))
    cluster.start()
    try:
        yield cluster.kubeconfig
    finally:
        say("stopping the local control plane")
        cluster.stop()


@contextlib.contextmanager
def redis_server(work_dir: pathlib.Path) -> Iterator[Any]:
    """A password-protected redis-server on a free loopback port."""
    from localkube.redis_server import RedisServer

    server = RedisServer(data_dir=work_dir / "redis")
    server.start()
    say(f"redis-server ready on 127.0.0.1:{server.port} (password protected)")
    try:
        yield server
    finally:
        say("stopping redis-server")
        server.stop()


def watch(
    api: Any,
    namespace: str,
    name: str,
    operator: OperatorProcess,
    timeout: float,
) -> tuple[dict[str, Any], float]:
    """Show a refreshing progress line until the QueueJob finishes; returns it and the time."""
    began = time.monotonic()
    tty = sys.stdout.isatty()
    last_printed = ""
    last_time = 0.0
    qj: dict[str, Any] = {}
    while True:
        operator.check()
        try:
            qj = demo_kube.get_queuejob(api, namespace, name)
        except (ApiException, urllib3.exceptions.HTTPError) as exc:
            if isinstance(exc, ApiException) and exc.status is not None and exc.status < 500:
                raise
            # A busy API server: keep the last state and try again on the next tick.
        elapsed = time.monotonic() - began
        line = demo_view.progress_line(qj, elapsed)
        if tty:
            print("\r\033[K" + line, end="", flush=True)
        elif line.rsplit(" ", 1)[0] != last_printed or elapsed - last_time > 5:
            # Without a terminal: a new line when something changed (or every 5 s).
            print(line, flush=True)
            last_printed, last_time = line.rsplit(" ", 1)[0], elapsed
        if demo_view.is_finished(qj):
            if tty:
                print()
            return qj, elapsed
        if elapsed > timeout:
            if tty:
                print()
            raise TimeoutError(
                f"QueueJob {name} did not finish in {timeout:.0f}s; operator log:\n"
                f"{operator.log_tail()}"
            )
        time.sleep(0.5)


def queuejob_name(manifest: pathlib.Path) -> str:
    """The name of the (first) QueueJob in the manifest."""
    for doc in demo_kube.load_manifest(manifest):
        if doc.get("kind") == "QueueJob":
            return str(doc["metadata"]["name"])
    raise ValueError(f"{manifest}: no QueueJob in this manifest")


def run(args: argparse.Namespace) -> int:
    name = queuejob_name(args.manifest)
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        work_dir = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qj-demo-")))
        kubeconfig = stack.enter_context(local_cluster(args.kubeconfig))
        redis = stack.enter_context(redis_server(work_dir))
        api = demo_kube.api_client(kubeconfig)
        stack.callback(api.close)

        say("applying the QueueJob CRD (crds/queuejobs.workqueue.example.com.yaml)")
        demo_kube.apply_crd(api)
        demo_kube.ensure_namespace(api, args.namespace)

        say("starting the operator: queuejob operator")
        operator = OperatorProcess(
            kubeconfig,
            redis_url=f"redis://127.0.0.1:{redis.port}/0",
            redis_password=redis.password,
            log_file=work_dir / "operator.log",
            namespaces=(args.namespace,),
            extra_env={"QUEUEJOB_STATUS_INTERVAL": "1"},
        )
        stack.callback(say, "stopping the operator")  # runs after operator.stop (LIFO)
        stack.enter_context(operator)
        print(f"    operator pid {operator.pid}, log {operator.log_file}", flush=True)

        if args.kubeconfig is not None:
            # A shared cluster: remove a leftover from an earlier run first, and our objects at
            # the end while the operator still runs (its finalizer removes the Redis keys).
            demo_kube.delete_manifest(api, args.manifest, args.namespace)
            stack.callback(demo_kube.delete_manifest, api, args.manifest, args.namespace)
        say(f"applying {_shown(args.manifest)} in namespace {args.namespace}")
        for obj in demo_kube.apply_manifest(api, args.manifest, args.namespace):
            print(f"    created {obj['kind']} {obj['metadata']['name']}", flush=True)

        say(f"QueueJob {name}: live progress (succeeded/total; x = dead-lettered)")
        qj, _ = watch(api, args.namespace, name, operator, args.timeout)
        created = qj["metadata"]["creationTimestamp"]
        say("waiting for the workers to exit (they stop once the queue is done)")
        pods = demo_view.pod_rows(demo_kube.wait_pods_finished(api, args.namespace, name))
        events = demo_kube.events_of(api, args.namespace, qj["metadata"]["uid"])
        duration = _duration(qj, created)

        print()
        for line in demo_view.summary(qj, pods, duration):
            print(line)
        if events:
            print("  events:")
            for event in events:
                print(f"    {event}")
        print()
        show_kubectl(kubeconfig, "get", "qj", "-n", args.namespace, "-o", "wide")
        expected = DEFAULT_EXPECTED_PHASE if args.manifest == DEFAULT_MANIFEST else None
        phase = demo_view.phase(qj)
        ok = expected is None or phase == expected
        if expected is not None:
            verdict = "as expected" if ok else f"UNEXPECTED (expected {expected})"
            print(f"Phase {phase}: {verdict} - the poison item is dead-lettered, the rest succeed.")
        if ok and expected is not None and args.redrive:
            qj = fix_and_redrive(api, kubeconfig, args.namespace, name, qj, operator, args.timeout)
            phase = demo_view.phase(qj)
            ok = phase == REDRIVEN_EXPECTED_PHASE
            verdict = "as expected" if ok else f"UNEXPECTED (expected {REDRIVEN_EXPECTED_PHASE})"
            print(f"Phase {phase}: {verdict} - the fixed item passed after the redrive.")

        if args.keep:
            say(
                f"--keep: everything stays up. In another shell:\n"
                f"    export KUBECONFIG={kubeconfig}\n"
                f"    .build/bin/kubectl get qj,jobs,pods -n {args.namespace}\n"
                f"  Press Ctrl-C to tear down."
            )
            with contextlib.suppress(KeyboardInterrupt):  # the expected way out of --keep
                while True:
                    operator.check()
                    time.sleep(1)
            print()
        say(f"tearing down (demo ran {time.monotonic() - began:.0f}s)")
    say("done")
    return 0 if ok else 1


def fix_and_redrive(
    api: Any,
    kubeconfig: pathlib.Path,
    namespace: str,
    name: str,
    qj: dict[str, Any],
    operator: OperatorProcess,
    timeout: float,
) -> dict[str, Any]:
    """Fix the dead-lettered items (the worker env lists them as fixed), redrive them with
    ``kubectl queuejob redrive --all`` and show progress until the QueueJob finishes again."""
    dead = [str(d["item"]) for d in qj.get("status", {}).get("deadLetters") or []]
    print()
    show_plugin(kubeconfig, "dead-letters", name, "-n", namespace)
    env = list(((qj.get("spec") or {}).get("worker") or {}).get("env") or [])
    env = [e for e in env if e.get("name") != "QUEUEJOB_DEMO_FIXED_ITEMS"]
    env.append({"name": "QUEUEJOB_DEMO_FIXED_ITEMS", "value": ",".join(dead)})
    say(
        f"fixing {', '.join(dead)}: the QueueJob's worker env now has QUEUEJOB_DEMO_FIXED_ITEMS "
        "(as a fixed worker image would handle it)"
    )
    demo_kube.patch_queuejob(api, namespace, name, {"spec": {"worker": {"env": env}}})
    say("redriving the dead letters back to pending; the operator re-creates the worker Job")
    if show_plugin(kubeconfig, "redrive", name, "--all", "-n", namespace) != 0:
        raise RuntimeError("kubectl queuejob redrive failed")
    say(f"QueueJob {name}: live progress after the redrive")
    qj, _ = watch(api, namespace, name, operator, timeout)
    print()
    show_plugin(kubeconfig, "status", name, "-n", namespace)
    return qj


def show_plugin(kubeconfig: pathlib.Path, *args: str) -> int:
    """Run and print ``kubectl queuejob ARGS`` (the plugin, as ``kubectl-queuejob``)."""
    print(f"$ kubectl queuejob {' '.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "queuejob_kubectl", f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    print((result.stdout + result.stderr).rstrip())
    print(flush=True)
    return result.returncode


def show_kubectl(kubeconfig: pathlib.Path, *args: str) -> None:
    """Print ``kubectl ARGS`` (the project's kubectl) as a user would see it, if available."""
    from localkube import paths

    kubectl = paths.kubectl_binary()
    if not kubectl.exists():
        return
    print(f"$ kubectl {' '.join(args)}")
    result = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    print((result.stdout or result.stderr).rstrip())
    print()


class _Interrupts:
    """SIGINT/SIGTERM/SIGHUP handler: the first signal interrupts the demo (which then tears down
    everything it started: the operator and redis-server run in their own sessions and would
    otherwise outlive it), later ones don't stop the teardown."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.count = 0
        self.signum = int(signal.SIGINT)

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self)

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count == 1:
            self.signum = signum
            raise KeyboardInterrupt
        print("\n(tearing down, please wait)", file=sys.stderr, flush=True)


def _duration(qj: dict[str, Any], created: str) -> float:
    """Seconds from the QueueJob's creation to its completionTime (or to now)."""
    from datetime import UTC, datetime

    def parse(ts: str) -> datetime:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))

    end_ts = qj.get("status", {}).get("completionTime")
    end = parse(end_ts) if end_ts else datetime.now(UTC)
    return max(0.0, (end - parse(created)).total_seconds())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    interrupts = _Interrupts()
    interrupts.install()
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: everything started by the demo has been stopped", file=sys.stderr)
        return 128 + interrupts.signum
    except (RuntimeError, TimeoutError, FileNotFoundError, ValueError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        print(f"\ndemo failed: API error {exc.status} {exc.reason}: {exc.body}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
