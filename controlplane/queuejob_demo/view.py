"""Rendering a QueueJob for humans: a one-line progress bar and a closing summary.

Pure functions of the QueueJob object (a dict as returned by the API), so they never fail on a
status the operator has not written yet: missing fields render as ``-`` or 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


def _counts(qj: Mapping[str, Any]) -> dict[str, int]:
    counts = qj.get("status", {}).get("counts") or {}
    keys = ("total", "pending", "leased", "succeeded", "failed", "retries")
    return {k: int(counts.get(k) or 0) for k in keys}


def phase(qj: Mapping[str, Any]) -> str:
    """The QueueJob's phase, or ``-`` before the operator has set one."""
    return str(qj.get("status", {}).get("phase") or "-")


def is_finished(qj: Mapping[str, Any]) -> bool:
    """True once the phase is Succeeded or Failed."""
    return phase(qj) in FINISHED_PHASES


def bar(done: int, failed: int, total: int, width: int = 30) -> str:
    """``[#####xx.....]``: ``#`` succeeded, ``x`` dead-lettered, ``.`` still to do."""
    if total <= 0:
        return "[" + "." * width + "]"
    ok = round(width * min(done, total) / total)
    bad = min(width - ok, round(width * min(failed, total) / total))
    return "[" + "#" * ok + "x" * bad + "." * (width - ok - bad) + "]"


def progress_line(qj: Mapping[str, Any], elapsed: float) -> str:
    """One status line: bar, succeeded/total, leased, retries, failed, workers, phase, time."""
    c = _counts(qj)
    active = qj.get("status", {}).get("activeWorkers")
    workers = "-" if active is None else str(active)
    return (
        f"{bar(c['succeeded'], c['failed'], c['total'])} "
        f"{c['succeeded']}/{c['total'] or '?'} done  leased {c['leased']}  "
        f"pending {c['pending']}  retries {c['retries']}  failed {c['failed']}  "
        f"workers {workers}  {phase(qj):<9} {elapsed:5.1f}s"
    )


def _condition_lines(qj: Mapping[str, Any]) -> list[str]:
    lines = []
    for cond in qj.get("status", {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        reason = cond.get("reason") or ""
        message = cond.get("message") or ""
        lines.append(f"    {cond.get('type')}: {reason} {('- ' + message) if message else ''}")
    return lines


def summary(qj: Mapping[str, Any], pods: Sequence[Mapping[str, str]], duration: float) -> list[str]:
    """The closing report: phase, conditions, counts, dead letters, duration and the pods.

    ``pods`` are ``{"name", "phase", "exit"}`` mappings (see :func:`pod_rows`).
    """
    status = qj.get("status", {})
    c = _counts(qj)
    name = qj.get("metadata", {}).get("name", "?")
    lines = [
        f"QueueJob {name}: phase {phase(qj)} after {duration:.1f}s",
        f"  items: {c['total']} total, {c['succeeded']} succeeded, {c['failed']} dead-lettered, "
        f"{c['retries']} {'retry' if c['retries'] == 1 else 'retries'}",
    ]
    conditions = _condition_lines(qj)
    if conditions:
        lines.append("  conditions:")
        lines.extend(conditions)
    dead = status.get("deadLetters") or []
    if dead:
        lines.append("  dead letters:")
        for entry in dead:
            lines.append(
                f"    {entry.get('item')!s:<20} attempts {entry.get('attempts', '?')}  "
                f"last error: {entry.get('error', '')}"
            )
    if status.get("startTime") or status.get("completionTime"):
        start, end = status.get("startTime", "-"), status.get("completionTime", "-")
        lines.append(f"  started {start}, completed {end}")
    lines.append(f"  Job {status.get('jobName', '-')}: {len(pods)} pod(s)")
    for pod in pods:
        lines.append(f"    {pod['name']:<40} {pod['phase']:<10} {pod['exit']}")
    return lines


def pod_rows(pods: Sequence[Any]) -> list[dict[str, str]]:
    """Summary rows of ``kubernetes.client.V1Pod`` objects: name, phase and exit codes."""
    rows = []
    for pod in pods:
        exits = []
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            term = cs.state.terminated if cs.state else None
            if term is not None:
                exits.append(f"exit {term.exit_code}")
        rows.append(
            {
                "name": pod.metadata.name,
                "phase": (pod.status.phase if pod.status else None) or "-",
                "exit": ", ".join(exits),
            }
        )
    return rows
