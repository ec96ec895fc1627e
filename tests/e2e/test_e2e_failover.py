"""Operator high availability: two operators with leader election, the leader killed or stopped.

On a private local control plane (the session's operator watches all namespaces and would
reconcile these QueueJobs too), two ``queuejob operator --leader-elect`` processes share one
Lease with short timings. QueueJobs are created before, during and after the failover; each must
reach Succeeded with exact counts and exactly one Job, and the two operators' logs must show
reconciliation by one process at a time: every line about a QueueJob written by the old leader
precedes the new leader's "Became the leader", and the new leader writes none before it.

- SIGKILL (lease 4 s, renew deadline 3 s, retry 1 s): the Lease cannot be released, so the
  standby takes it once it has seen no renewal for a lease duration. Bound asserted: takeover
  within lease duration + 2 retry periods + 2 s of slack for this shared machine (8 s) of the
  kill: the last renewal can be up to one retry period before the kill, the standby's view of
  it up to one retry period late, and its attempts one retry period apart.
- SIGTERM (lease 10 s, renew deadline 6 s, retry 1 s): the leader stops kopf, releases the
  Lease and exits 0; the standby takes it at its next attempt. Asserted: within 5 s, which
  without the release would be impossible (at least 10 s - 1 s - request time after the kill).
- SIGSTOP (lease 4 s, renew deadline 3 s, retry 1 s): a stalled leader renews nothing; the
  standby takes over as after a SIGKILL; on SIGCONT the old leader must exit with code 3 (its
  last renewal is older than the renew deadline) instead of reconciling on.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures.operator import CRD, TEST_SETTINGS, queuejob, wait_for
from localkube import LocalCluster, paths
from localkube.redis_server import RedisServer
from queuejob_demo.stack import OperatorProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

LEASE_NS = "queuejob-system"
LEASE = "queuejob-operator"
NS = "failover"
WORK = [{"name": "QUEUEJOB_DEMO_WORK_SECONDS", "value": "0.4"}]
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] ")


@dataclass
class Private:
    """The private control plane, its Redis and a Lease reader."""

    kubeconfig: Path
    redis: RedisServer
    coordination: kubernetes.client.CoordinationV1Api
    batch: kubernetes.client.BatchV1Api

    def kubectl(self, *args: str, input: str | None = None) -> str:
        import subprocess

        result = subprocess.run(
            [str(paths.kubectl_binary()), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def holder(self) -> str | None:
        try:
            lease = self.coordination.read_namespaced_lease(LEASE, LEASE_NS)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return lease.spec.holder_identity if lease.spec else None

    def qj(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            self.kubectl("get", "queuejob", name, "-n", NS, "-o", "json")
        )
        return result


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    with LocalCluster() as local:
        server = RedisServer()
        server.start()
        api = kubernetes.config.new_client_from_config(config_file=str(local.kubeconfig))  # type: ignore[no-untyped-call]
        env = Private(
            local.kubeconfig,
            server,
            kubernetes.client.CoordinationV1Api(api),
            kubernetes.client.BatchV1Api(api),
        )
        try:
            env.kubectl("apply", "-f", str(CRD))
            env.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s",
                "crd/queuejobs.workqueue.example.com",
            )  # fmt: skip
            env.kubectl("create", "namespace", LEASE_NS)
            env.kubectl("create", "namespace", NS)
            yield env
        finally:
            server.close()


class Operator:
    """One ``queuejob operator --leader-elect`` process named ``name`` (its POD_NAME)."""

    def __init__(self, env: Private, name: str, timings: tuple[int, int, int], logs: Path):
        lease, renew, retry = timings
        self.name = name
        self.process = OperatorProcess(
            env.kubeconfig,
            redis_url=f"redis://127.0.0.1:{env.redis.port}/0",
            redis_password=env.redis.password,
            log_file=logs / f"{name}.log",
            extra_env={
                **TEST_SETTINGS,
                "POD_NAME": name,
                "QUEUEJOB_LEADER_ELECTION_NAMESPACE": LEASE_NS,
                "QUEUEJOB_LEADER_ELECTION_NAME": LEASE,
                "QUEUEJOB_LEADER_ELECTION_LEASE_DURATION": str(lease),
                "QUEUEJOB_LEADER_ELECTION_RENEW_DEADLINE": str(renew),
                "QUEUEJOB_LEADER_ELECTION_RETRY_PERIOD": str(retry),
            },
            extra_args=("--standalone", "--all-namespaces", "--leader-elect"),
        )

    def start(self) -> Operator:
        self.process.start()
        return self

    def owns(self, holder: str | None) -> bool:
        return bool(holder) and str(holder).startswith(f"{self.name}_")

    def log(self) -> str:
        return self.process.log_file.read_text(errors="replace")

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.process.env["QUEUEJOB_LIVENESS"], timeout=5) as resp:
            assert resp.status == 200
            body: dict[str, Any] = json.loads(resp.read().decode() or "{}")
            return body

    def leader_gauge(self) -> float:
        for family in text_string_to_metric_families(self.process.metrics_text()):
            for sample in family.samples:
                if sample.name == "queuejob_leader":
                    return float(sample.value)
        raise AssertionError(f"no queuejob_leader in {self.name}'s metrics")

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.process.pid, signum)

    def stamps(self, predicate: Callable[[str], bool]) -> list[datetime.datetime]:
        """Times of this operator's log lines that satisfy ``predicate``."""
        out = []
        for line in self.log().splitlines():
            match = _STAMP.match(line)
            if match and predicate(line):
                out.append(datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"))
        return out


def _about_queuejobs(line: str) -> bool:
    return f"[{NS}/" in line


def _create(env: Private, names: list[str], items: int) -> dict[str, int]:
    created = {}
    for name in names:
        manifest = queuejob(
            name, NS, items=[f"{name}-{i:02d}" for i in range(items)], parallelism=2,
            worker={"env": WORK},
        )  # fmt: skip
        env.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        created[name] = items
    return created


def _phase(env: Private, name: str) -> str | None:
    return env.qj(name).get("status", {}).get("phase")


def _assert_done_once(env: Private, created: dict[str, int], logs: Callable[[], str]) -> None:
    """Every QueueJob Succeeded with exact counts, and exactly one Job each."""
    for name, items in created.items():
        try:
            wait_for(lambda n=name: _phase(env, n) in ("Succeeded", "Failed"), 180, f"{name} done")
        except AssertionError:
            raise AssertionError(f"{name}: {env.qj(name).get('status')}\n{logs()}") from None
        status = env.qj(name)["status"]
        assert status["phase"] == "Succeeded", status
        counts = status["counts"]
        assert (counts["total"], counts["succeeded"], counts["failed"]) == (items, items, 0), counts
        jobs = env.batch.list_namespaced_job(
            NS, label_selector=f"workqueue.example.com/queuejob={name}"
        ).items
        assert [job.metadata.name for job in jobs] == [f"{name}-workers"], name


def _assert_one_at_a_time(old: Operator, new: Operator) -> datetime.datetime:
    """The old leader's QueueJob lines all precede the new one's election; returns its time."""
    (elected,) = new.stamps(lambda line: "Became the leader" in line)
    old_lines = old.stamps(_about_queuejobs)
    new_lines = new.stamps(_about_queuejobs)
    assert old_lines, "the first leader reconciled nothing"
    assert new_lines, "the new leader reconciled nothing"
    assert max(old_lines) <= elected <= min(new_lines), (max(old_lines), elected, min(new_lines))
    return elected


def _takeover(env: Private, new: Operator, since: float, limit: float) -> float:
    """Seconds from ``since`` (monotonic) until ``new`` holds the Lease (polled every 50 ms)."""
    wait_for(lambda: new.owns(env.holder()), limit + 30, f"{new.name} to hold the Lease", 0.05)
    return time.monotonic() - since


def test_sigkill_of_the_leader_fails_over_within_the_lease_duration(
    private: Private, tmp_path: Path
) -> None:
    lease, _renew, retry = timings = (4, 3, 1)
    a = Operator(private, "op-a", timings, tmp_path).start()
    wait_for(lambda: a.owns(private.holder()), 30, "op-a to take the Lease")
    b = Operator(private, "op-b", timings, tmp_path).start()
    try:
        # The standby is live (its own endpoint), exports queuejob_leader 0, and stays standby.
        time.sleep(2 * retry)
        assert b.health()["role"] == "standby"
        assert b.health()["holder"].startswith("op-a_")
        assert (a.leader_gauge(), b.leader_gauge()) == (1.0, 0.0)
        assert a.owns(private.holder())
        assert not b.stamps(_about_queuejobs), "the standby reconciled"

        created = _create(private, ["before-0", "before-1", "before-2"], 16)
        for name in created:
            wait_for(lambda n=name: _phase(private, n) == "Running", 90, f"{name} Running")

        a.signal(signal.SIGKILL)
        killed = time.monotonic()
        created |= _create(private, ["during-0", "during-1"], 8)
        took = _takeover(private, b, killed, lease + 2 * retry + 2)
        created |= _create(private, ["after-0", "after-1"], 8)

        print(f"\nSIGKILL: op-b holds the Lease {took:.2f}s after the kill", flush=True)
        assert took <= lease + 2 * retry + 2, f"takeover took {took:.1f}s"
        assert a.process.component.exit_code() == -signal.SIGKILL
        _assert_done_once(private, created, lambda: b.log()[-4000:])
        elected = _assert_one_at_a_time(a, b)
        first = min(b.stamps(_about_queuejobs))
        print(f"SIGKILL: op-b's first QueueJob line {(first - elected).total_seconds():.2f}s "
              "after its election", flush=True)  # fmt: skip
        assert b.leader_gauge() == 1.0
        assert "Leadership lost" not in b.log()
    finally:
        b.process.stop(grace=20)
        a.process.stop(grace=1)


def test_sigterm_of_the_leader_releases_the_lease_for_a_fast_takeover(
    private: Private, tmp_path: Path
) -> None:
    _lease, _renew, retry = timings = (10, 6, 1)
    c = Operator(private, "op-c", timings, tmp_path).start()
    # The previous test's last leader released the Lease on its SIGTERM: no 10 s wait here.
    wait_for(lambda: c.owns(private.holder()), 3 * retry + 5, "op-c to take the released Lease")
    d = Operator(private, "op-d", timings, tmp_path).start()
    try:
        created = _create(private, ["term-0", "term-1"], 16)
        for name in created:
            wait_for(lambda n=name: _phase(private, n) == "Running", 90, f"{name} Running")
        assert d.health()["role"] == "standby"

        c.signal(signal.SIGTERM)
        stopped = time.monotonic()
        took = _takeover(private, d, stopped, 5)
        code = c.process.component.process.wait(30)  # type: ignore[union-attr]
        created |= _create(private, ["term-after"], 8)

        print(f"\nSIGTERM: op-d holds the Lease {took:.2f}s after the signal", flush=True)
        assert code == 0, c.log()[-3000:]
        assert "Released the Lease" in c.log()
        assert took <= 5, f"takeover took {took:.1f}s: was the Lease released?"
        _assert_done_once(private, created, lambda: d.log()[-4000:])
        (released,) = c.stamps(lambda line: "Released the Lease" in line)
        elected = _assert_one_at_a_time(c, d)
        assert released <= elected
    finally:
        d.process.stop(grace=20)
        c.process.stop(grace=1)


def test_a_stalled_leader_exits_once_it_missed_the_renew_deadline(
    private: Private, tmp_path: Path
) -> None:
    """SIGSTOP (a stalled process: no renewals), takeover, SIGCONT: the old leader exits (3)."""
    lease, _renew, retry = timings = (4, 3, 1)
    e = Operator(private, "op-e", timings, tmp_path).start()
    wait_for(lambda: e.owns(private.holder()), 3 * retry + 5, "op-e to take the released Lease")
    f = Operator(private, "op-f", timings, tmp_path).start()
    try:
        created = _create(private, ["stall-0"], 16)
        wait_for(lambda: _phase(private, "stall-0") == "Running", 90, "stall-0 Running")

        e.signal(signal.SIGSTOP)
        stalled = time.monotonic()
        took = _takeover(private, f, stalled, lease + 2 * retry + 2)
        print(f"\nSIGSTOP: op-f holds the Lease {took:.2f}s after the stall", flush=True)
        created |= _create(private, ["stall-1"], 8)
        e.signal(signal.SIGCONT)
        code = e.process.component.process.wait(10)  # type: ignore[union-attr]

        assert code == 3, e.log()[-3000:]
        assert "Leadership lost: no renewal of the Lease succeeded within 3.0s" in e.log()
        assert f.owns(private.holder())
        _assert_done_once(private, created, lambda: f.log()[-4000:])
        assert "Leadership lost" not in f.log()
    finally:
        e.process.stop(grace=1)
        f.process.stop(grace=20)
