"""Output of ``kubectl queuejob``: human tables (kubectl's column style), JSON or YAML."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from queuejob import wording

BAR_WIDTH = 30

#: ``status`` of a QueueJob the operator has not written a status to yet: why, and how to check
#: the operator in both setups (a deployment, and a process on this machine).
UNSEEN = (
    "The operator has not seen this QueueJob yet: it has no status. Check that the operator runs:",
    "  deployed (manifests/deploy):  kubectl -n queuejob-system get pods "
    "-l app.kubernetes.io/name=queuejob-operator",
    "                                kubectl -n queuejob-system logs deploy/queuejob-operator",
    "  on this machine (make dev-up, make demo or `queuejob operator` by hand): that the process "
    "runs, and its log",
)


def dump(data: Any, output: str) -> str:
    """``data`` as JSON or YAML text (``-o json|yaml``)."""
    if output == "json":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by three spaces, as ``kubectl get`` prints them."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    text = "<none>" if value is None or value == "" else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 100 else text[:97] + "..."


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        return None


def age(text: str | None, now: datetime.datetime | None = None) -> str:
    """kubectl-style age of an RFC 3339 time (``45s``, ``3m12s``, ``2h5m``, ``4d``)."""
    when = parse_time(text)
    if when is None:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.datetime.now(datetime.UTC)) - when).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s" if seconds < 600 else f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m"
    return f"{seconds // 86400}d"


def progress_bar(succeeded: int, failed: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####xx.....]`` succeeded (#), dead-lettered (x), the rest (.), like the demo's."""
    if total <= 0:
        return "[" + "." * width + "]"
    ok = round(width * succeeded / total)
    bad = min(width - ok, round(width * failed / total))
    return "[" + "#" * ok + "x" * bad + "." * (width - ok - bad) + "]"


def summary(qj: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The data of ``status`` (also its ``-o json|yaml`` form)."""
    meta, status = qj["metadata"], qj.get("status") or {}
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "phase": status.get("phase"),
        "progress": status.get("progress"),
        "counts": status.get("counts") or {},
        "itemDuration": status.get("itemDuration") or {},
        "activeWorkers": status.get("activeWorkers", 0),
        "jobName": status.get("jobName"),
        "conditions": status.get("conditions") or [],
        "lastRequest": status.get("lastRequest"),
        "events": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": e.get("count") or 1,
                "lastTimestamp": e.get("lastTimestamp") or e.get("eventTime"),
            }
            for e in events
        ],
    }


def status_text(data: Mapping[str, Any]) -> str:
    """The human form of :func:`summary`."""
    counts = data["counts"]
    total = int(counts.get("total") or 0)
    succeeded = int(counts.get("succeeded") or 0)
    failed = int(counts.get("failed") or 0)
    pct = f"{100 * succeeded // total}%" if total else "-"
    out = [
        f"QueueJob {data['namespace']}/{data['name']}   phase: {data['phase'] or '<none>'}   "
        f"Job: {data['jobName'] or '<none>'} "
        f"({wording.count(int(data['activeWorkers'] or 0), 'active worker')})",
        f"{progress_bar(succeeded, failed, total)} {succeeded}/{total} succeeded ({pct})",
        "pending {p}   leased {l}   succeeded {s}   failed {f}   retries {r}".format(
            p=counts.get("pending", 0),
            l=counts.get("leased", 0),
            s=succeeded,
            f=failed,
            r=counts.get("retries", 0),
        ),
        item_duration_line(data.get("itemDuration") or {}),
        "",
    ]
    if not (data["phase"] or data["conditions"] or data["counts"]):
        out += [*UNSEEN, ""]
    out.append("Conditions:")
    conditions = [
        (
            c.get("type"),
            c.get("status"),
            c.get("reason"),
            age(c.get("lastTransitionTime")),
            c.get("message"),
        )
        for c in data["conditions"]
    ]
    out.append(_indent(table(("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"), conditions)))
    last = data.get("lastRequest")
    if last:
        out.append(
            f"Last request: {last.get('action')} {last.get('id')}: {last.get('result')} "
            f"({age(last.get('time'))} ago): {last.get('message')}"
        )
        out.append("")
    out.append("Events:")
    if data["events"]:
        rows = [
            (age(e["lastTimestamp"]), e["type"], e["reason"], e["message"]) for e in data["events"]
        ]
        out.append(_indent(table(("AGE", "TYPE", "REASON", "MESSAGE"), rows)))
    else:
        out.append("  <none>\n")
    return "\n".join(out)


def replaced_workers_note(events: Sequence[Mapping[str, Any]]) -> str | None:
    """For ``logs``: a note when the operator re-created the worker Job (Event
    ``WorkersRestarted``, after a redrive or added items gave a finished QueueJob work again).

    The old Job is deleted with its pods (background propagation) before the new one is
    created, so only the current Job's pods, and their logs, exist. None if no such Event is
    among ``events`` (Events expire, after an hour by default).
    """
    restarts = [e for e in events if e.get("reason") == "WorkersRestarted"]
    if not restarts:
        return None
    last = restarts[-1]
    times = sum(int(e.get("count") or 1) for e in restarts)
    when = age(last.get("lastTimestamp") or last.get("eventTime"))
    return (
        f"Note: the worker Job was re-created {wording.count(times, 'time')} (the last {when} "
        "ago: a redrive or added items gave the finished QueueJob work again). The earlier "
        "Job's pods were deleted with it, and their logs with them: the lines above are from "
        "the current Job's pods only.\n"
    )


def seconds(value: float) -> str:
    """A duration for people: ``850ms``, ``4.2s``, ``3m12s``, ``1h5m``."""
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        return f"{int(value) // 60}m{int(value) % 60}s"
    return f"{int(value) // 3600}h{(int(value) % 3600) // 60}m"


def item_duration_line(duration: Mapping[str, Any]) -> str:
    """``per item: p50 1.2s   p95 4.8s   (340 items)``, from ``status.itemDuration``."""
    count = int(duration.get("count") or 0)
    if not count or "p50Seconds" not in duration or "p95Seconds" not in duration:
        return "per item: p50 -   p95 -   (no item completed yet)"
    p50, p95 = float(duration["p50Seconds"]), float(duration["p95Seconds"])
    return f"per item: p50 {seconds(p50)}   p95 {seconds(p95)}   ({wording.count(count, 'item')})"


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())
