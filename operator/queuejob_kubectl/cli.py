"""Command line of ``kubectl queuejob`` (installed as ``kubectl-queuejob``).

Follows kubectl's conventions: ``-n/--namespace``, ``--context``, ``--kubeconfig``,
``--as``/``--as-group``, ``-o json|yaml`` (default: a human table), errors as
``error: <message>`` on stderr; exit code 0 on success, 1 on an error (API, not found,
forbidden, a request the operator refused), 2 on a usage error. Flags may come before or after
the subcommand.

Subcommands::

    status NAME                      progress, counts, conditions, last request, recent events
    leases NAME                      items in flight: holder pod, attempt, age
    dead-letters NAME                dead items: attempts, last error
    redrive NAME (ITEM... | --all)   dead letters back to pending (a finished QueueJob reruns)
    add NAME (ITEM... | --from-file PATH)   new items (duplicates of known items are ignored)
    logs NAME [--tail N]             every worker pod's log, each line prefixed by [pod]; after a
                                     redrive or add re-created the Job, a note that the earlier
                                     Job's pods (and their logs) are gone

``redrive`` and ``add`` ask the operator through the API (see ``queuejob.operate``): RBAC
``patch`` on ``queuejobs`` authorizes them (``add`` also ``create`` on ``configmaps``); they
wait for the operator's result (``--timeout``, ``--wait=false`` to only submit).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from queuejob import wording
from queuejob.operate import MAX_REDRIVE_ITEMS
from queuejob_kubectl import render
from queuejob_kubectl.api import Kube, PluginError, new_request_id

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
PROG = "kubectl queuejob"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's usage errors: exit 2, kubectl-style
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _common() -> _Parser:
    common = _Parser(add_help=False)
    s = argparse.SUPPRESS
    common.add_argument("-n", "--namespace", default=s, help="namespace (default: the context's)")
    common.add_argument("--context", default=s, help="kubeconfig context to use")
    common.add_argument("--kubeconfig", default=s, help="path to the kubeconfig file")
    common.add_argument("--as", dest="as_user", default=s, help="user to impersonate")
    common.add_argument("--as-group", dest="as_group", default=s, help="group to impersonate")
    common.add_argument(
        "-o", "--output", choices=("json", "yaml"), default=s, help="json or yaml (default: table)"
    )
    return common


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = _Parser(
        prog=PROG,
        parents=[common],
        description="Inspect and operate QueueJobs (workqueue.example.com).",
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.add_argument("name", metavar="NAME", help="the QueueJob")
        return p

    command("status", "progress, counts, conditions, the last request and recent events")
    command("leases", "items held by workers: item, holder pod, attempt, age")
    command("dead-letters", "dead-lettered items with their attempts and last error")
    redrive = command("redrive", "move dead letters back to pending (attempts reset)")
    redrive.add_argument("items", nargs="*", metavar="ITEM", help="dead letters to redrive")
    redrive.add_argument("--all", action="store_true", help="redrive every dead letter")
    add = command("add", "add items to the QueueJob's queue")
    add.add_argument("items", nargs="*", metavar="ITEM", help="items to add")
    add.add_argument(
        "--from-file", metavar="PATH", help="read items from PATH, one per line ('-': stdin)"
    )
    for p in (redrive, add):
        p.add_argument(
            "--timeout", type=float, default=120.0, help="seconds to wait for the operator"
        )
        p.add_argument(
            "--wait",
            choices=("true", "false"),
            default="true",
            help="wait for the operator's result (default true)",
        )
    logs = command("logs", "logs of every worker pod, each line prefixed by [pod]")
    logs.add_argument("--tail", type=int, default=None, help="lines per pod (default: all)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        kube = Kube(
            kubeconfig=getattr(args, "kubeconfig", None),
            context=getattr(args, "context", None),
            namespace=getattr(args, "namespace", None),
            as_user=getattr(args, "as_user", None),
            as_group=getattr(args, "as_group", None),
        )
        try:
            return _run(kube, args, getattr(args, "output", None))
        finally:
            kube.close()
    except PluginError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _usage(message: str) -> int:
    sys.stderr.write(f"error: {message}\nSee '{PROG} --help'.\n")
    return EXIT_USAGE


def _run(kube: Kube, args: argparse.Namespace, output: str | None) -> int:
    name: str = args.name
    command: str = args.command
    if command == "redrive" and bool(args.items) == bool(args.all):
        return _usage("redrive takes ITEM... or --all (one of them)")
    if command == "add" and bool(args.items) == bool(args.from_file):
        return _usage("add takes ITEM... or --from-file PATH (one of them)")
    if command == "redrive" and len(set(args.items)) > MAX_REDRIVE_ITEMS:
        return _usage(f"redrive lists at most {MAX_REDRIVE_ITEMS} items per call (or use --all)")
    if command in ("redrive", "add") and args.timeout <= 0:
        return _usage("--timeout must be > 0")
    if command == "logs" and args.tail is not None and args.tail < 0:
        return _usage("--tail must be >= 0")

    if command == "status":
        qj = kube.queuejob(name)
        data = render.summary(qj, kube.events(qj))
        _write(render.dump(data, output) if output else render.status_text(data))
        return EXIT_OK
    if command == "leases":
        return _leases(kube, name, output)
    if command == "dead-letters":
        return _dead_letters(kube, name, output)
    if command == "logs":
        return _logs(kube, name, args.tail)
    return _request(kube, args, output)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _leases(kube: Kube, name: str, output: str | None) -> int:
    status = kube.queuejob(name).get("status") or {}
    rows = list(status.get("leases") or [])
    leased = int((status.get("counts") or {}).get("leased") or 0)
    if output:
        _write(render.dump({"leased": leased, "leases": rows}, output))
        return EXIT_OK
    now = datetime.datetime.now(datetime.UTC)
    if not rows:
        _write(f"No items leased in queuejob {name}.\n")
        return EXIT_OK
    table = [
        (r.get("item"), r.get("worker"), r.get("attempt"), render.age(r.get("since"), now))
        for r in rows
    ]
    _write(render.table(("ITEM", "WORKER", "ATTEMPT", "AGE"), table))
    if leased > len(rows):
        _write(
            f"({len(rows)} of {wording.count(leased, 'leased item')} shown, oldest leases first)\n"
        )
    return EXIT_OK


def _dead_letters(kube: Kube, name: str, output: str | None) -> int:
    status = kube.queuejob(name).get("status") or {}
    rows = list(status.get("deadLetters") or [])
    dead = int((status.get("counts") or {}).get("failed") or 0)
    if output:
        _write(render.dump({"failed": dead, "deadLetters": rows}, output))
        return EXIT_OK
    if not rows:
        _write(f"No dead letters in queuejob {name}.\n")
        return EXIT_OK
    table = [(r.get("item"), r.get("attempts"), r.get("error")) for r in rows]
    _write(render.table(("ITEM", "ATTEMPTS", "ERROR"), table))
    if dead > len(rows):
        _write(
            f"({len(rows)} of {wording.count(dead, 'dead letter')} shown, oldest first; "
            "`redrive --all` redrives every one)\n"
        )
    return EXIT_OK


def _logs(kube: Kube, name: str, tail: int | None) -> int:
    qj = kube.queuejob(name)  # a clear "not found" first
    pods = kube.worker_pods(name)
    try:
        note = render.replaced_workers_note(kube.events(qj, limit=50))
    except PluginError:
        note = None  # no right to list Events: the logs alone
    if not pods:
        sys.stderr.write(f"No worker pods for queuejob {name}.\n")
    for pod in pods:
        pod_name = pod["metadata"]["name"]
        try:
            text = kube.pod_log(pod_name, tail)
        except PluginError as exc:
            sys.stderr.write(f"[{pod_name}] no logs: {exc}\n")
            continue
        _write("".join(f"[{pod_name}] {line}\n" for line in text.splitlines()))
    if note:
        sys.stderr.write(note)
    return EXIT_OK


def _read_items(args: argparse.Namespace) -> list[str]:
    if not args.from_file:
        return list(args.items)
    try:
        if args.from_file == "-":
            text = sys.stdin.read()
        else:
            text = Path(args.from_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PluginError(f"cannot read {args.from_file}: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _request(kube: Kube, args: argparse.Namespace, output: str | None) -> int:
    name: str = args.name
    rid = new_request_id()
    request: dict[str, Any] = {"id": rid, "action": args.command}
    if args.command == "redrive":
        if args.all:
            request["all"] = True
        else:
            request["items"] = list(dict.fromkeys(args.items))
    else:
        items = _read_items(args)
        if not items:
            raise PluginError(f"{args.from_file} holds no items")
        qj = kube.queuejob(name)
        request["configMap"] = kube.create_items_configmap(qj, rid, "\n".join(items) + "\n")
    kube.submit(name, request, args.timeout)
    if args.wait == "false":
        result: dict[str, Any] = {"id": rid, "action": args.command, "result": "Submitted"}
    else:
        result = kube.wait_result(name, rid, args.timeout)
    ok = result.get("result") in ("Succeeded", "Submitted")
    if output:
        _write(render.dump(result, output))
    elif result["result"] == "Submitted":
        _write(f"queuejob/{name} {args.command} request {rid} submitted\n")
    elif ok:
        _write(f"queuejob/{name} {args.command}: {result.get('message')}\n")
    if not ok:
        sys.stderr.write(
            f"error: {args.command} refused by the operator: {result.get('message')}\n"
        )
    return EXIT_OK if ok else EXIT_ERROR
