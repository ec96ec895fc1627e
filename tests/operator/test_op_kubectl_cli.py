"""kubectl queuejob without a cluster: flags and exit codes, kubeconfig handling, rendering.
(The commands against a cluster are in tests/e2e/test_e2e_kubectl_plugin.py.)"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from queuejob_kubectl import cli, render
from queuejob_kubectl.api import Kube, PluginError

KUBECONFIG = """apiVersion: v1
kind: Config
current-context: one
clusters:
- {name: c, cluster: {server: 'https://127.0.0.1:1'}}
contexts:
- {name: one, context: {cluster: c, user: u, namespace: team-a}}
- {name: two, context: {cluster: c, user: u}}
users:
- {name: u, user: {token: t}}
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    return path


def test_namespace_comes_from_the_flag_else_the_context(kubeconfig: Path) -> None:
    def ns(context: str | None, namespace: str | None) -> str:
        return Kube(kubeconfig=str(kubeconfig), context=context, namespace=namespace).namespace

    assert ns(None, None) == "team-a"
    assert ns("two", None) == "default"
    assert ns("two", "x") == "x"
    with pytest.raises(PluginError, match="context 'three' not found"):
        ns("three", None)


def test_impersonation_headers(kubeconfig: Path) -> None:
    kube = Kube(
        kubeconfig=str(kubeconfig), context=None, namespace=None, as_user="alice", as_group="g"
    )
    assert kube.headers == {"Impersonate-User": "alice", "Impersonate-Group": "g"}


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status"],
        ["nonsense", "x"],
        ["status", "x", "-o", "wide"],
        ["redrive", "x"],
        ["redrive", "x", "a", "--all"],
        ["add", "x"],
        ["add", "x", "a", "--from-file", "f"],
        ["logs", "x", "--tail", "-1"],
        ["redrive", "x", *[f"i{n}" for n in range(1001)]],
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = cli.main([f"--kubeconfig={kubeconfig}", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 2
    assert "error:" in capsys.readouterr().err


def test_unreachable_server_and_missing_kubeconfig_exit_1(
    kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([f"--kubeconfig={kubeconfig}", "status", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the API server https://127.0.0.1:1")
    assert "Traceback" not in err
    assert cli.main(["--kubeconfig", str(tmp_path / "none"), "leases", "x"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_flags_go_before_or_after_the_command(kubeconfig: Path) -> None:
    parser = cli.parser()
    a = parser.parse_args(["-n", "ns", "-o", "json", "status", "q"])
    b = parser.parse_args(["status", "q", "-n", "ns", "-o", "json"])
    for args in (a, b):
        assert (args.namespace, args.output, args.command, args.name) == (
            "ns",
            "json",
            "status",
            "q",
        )


def test_rendering() -> None:
    assert render.progress_bar(5, 1, 10, width=10) == "[#####x....]"
    assert render.progress_bar(0, 0, 0, width=4) == "[....]"
    now = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
    assert render.age("2026-01-01T11:59:15Z", now) == "45s"
    assert render.age("2026-01-01T11:56:48Z", now) == "3m12s"
    assert render.age("2026-01-01T09:55:00Z", now) == "2h5m"
    assert render.age(None, now) == "<unknown>"
    text = render.table(("A", "LONGER"), [("xyz", None), ("1", "two")])
    assert text.splitlines() == ["A     LONGER", "xyz   <none>", "1     two"]
    assert render.dump({"a": [1]}, "yaml") == "a:\n- 1\n"


def test_status_of_a_queuejob_the_operator_has_not_seen() -> None:
    # No operator running: the object has no status at all. The output says so and how to
    # check the operator, deployed or local, instead of a bare "phase: <none>".
    qj = {"metadata": {"name": "early", "namespace": "ns"}, "spec": {"items": ["a"]}}
    text = render.status_text(render.summary(qj, []))
    assert "phase: <none>" in text
    assert "The operator has not seen this QueueJob yet" in text
    assert "kubectl -n queuejob-system logs deploy/queuejob-operator" in text
    assert "make dev-up" in text
    # Once the operator wrote a status, no such note.
    seen = {**qj, "status": {"phase": "Pending", "conditions": [], "counts": {"total": 1}}}
    assert "has not seen" not in render.status_text(render.summary(seen, []))


def test_logs_note_after_the_job_was_re_created() -> None:
    restarted = {
        "reason": "WorkersRestarted",
        "count": 1,
        "lastTimestamp": "2026-01-01T11:59:00Z",
        "message": "Job r-workers re-created: the queue has work again",
    }
    other = {"reason": "Redriven", "count": 1, "lastTimestamp": "2026-01-01T11:58:59Z"}
    assert render.replaced_workers_note([other]) is None
    note = render.replaced_workers_note([other, restarted])
    assert note is not None
    assert "re-created 1 time " in note
    assert "earlier Job's pods were deleted" in note and "current Job's pods only" in note
    twice = render.replaced_workers_note([restarted, {**restarted, "count": 2}])
    assert twice is not None and "re-created 3 times" in twice
