"""``queuejob`` command line: ``operator``, ``worker`` and ``seed``.

- ``queuejob operator [flags]``: runs the kopf operator. Every setting is an env var
  (``QUEUEJOB_*``) and a flag (see ``queuejob operator --help``); kopf's own ``kopf run`` flags
  ``-n/--namespace``, ``-A/--all-namespaces``, ``--standalone``, ``--peering``, ``-v``, ``-d``,
  ``-q`` are accepted too. Equivalent: ``kopf run -m queuejob.operator_main`` with env vars.
- ``queuejob worker``: the built-in worker of the Job's pods (configured by env, see worker.py).
- ``queuejob seed --queue NAME [--file F] [ITEM...]``: add items to a queue (idempotent).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

from queuejob import settings as qj_settings
from queuejob import wording


def _operator_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator",
        help="run the QueueJob operator (kopf)",
        description="Run the QueueJob operator (kopf).",
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="kopf_namespaces",
        help="namespace to watch (repeatable; globs allowed); adds to QUEUEJOB_NAMESPACES",
    )
    p.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch all namespaces (the default when no namespace is given)",
    )
    p.add_argument(
        "--standalone",
        action="store_true",
        help="no peering (the default unless --peering is given)",
    )
    p.add_argument("--peering", default=None, help="kopf peering name (needs kopf's peering CRDs)")
    p.add_argument("-v", "--verbose", action="store_true", help="verbose logs")
    p.add_argument("-d", "--debug", action="store_true", help="debug logs")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    qj_settings.add_arguments(p)


def _seed_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "seed",
        help="add items to a queue (idempotent)",
        description="Add items to a Redis lease queue; items seen before are "
        "skipped. Password from QUEUEJOB_REDIS_PASSWORD.",
    )
    p.add_argument("--queue", required=True, help="queue name")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("QUEUEJOB_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis URL [env QUEUEJOB_REDIS_URL]",
    )
    p.add_argument("--file", help="read items from this file, one per line ('-' = stdin)")
    p.add_argument("--lease-seconds", type=float, default=None, help="configure the lease length")
    p.add_argument("--max-attempts", type=int, default=None, help="configure max attempts")
    p.add_argument("items", nargs="*", help="items")


def run_operator(args: argparse.Namespace) -> int:
    """Apply flags to the environment, then run kopf with our handler module."""
    from queuejob.arenas import cap_arenas

    cap_arenas()  # before any thread starts (see queuejob.arenas)
    import kopf

    try:
        config = qj_settings.from_args(args)
    except qj_settings.SettingsError as exc:
        print(f"queuejob operator: {exc}", file=sys.stderr)
        return 2
    os.environ.update(qj_settings.to_env(config))
    namespaces = list(config.namespaces) + list(args.kopf_namespaces)
    if namespaces and args.all_namespaces:
        print("queuejob operator: --namespace and --all-namespaces are exclusive", file=sys.stderr)
        return 2
    if config.leader_elect and args.peering is not None:
        print("queuejob operator: --leader-elect and --peering are exclusive", file=sys.stderr)
        return 2
    # Object log lines carry "[namespace/name]".
    kopf.configure(verbose=args.verbose, debug=args.debug, quiet=args.quiet, log_prefix=True)
    import queuejob.operator_main  # noqa: F401  (registers the handlers)
    from queuejob.metrics import Metrics

    # Served before kopf starts, so that a standby exports them too (queuejob_leader 0).
    metrics = Metrics(config.max_concurrent_handlers)
    metrics.serve(config.metrics_address, config.metrics_port)

    async def operate(stop: threading.Event | None, check: Callable[[], None] | None) -> None:
        """kopf's operator in this event loop; ``stop`` (set from another thread) stops it.

        kopf would wait for a threading.Event in an executor thread that nothing wakes when it
        stops for its own reasons (its SIGTERM handler), and the loop's shutdown would wait for
        that thread forever; an asyncio.Event relayed by a cancellable task has no such thread.
        """
        flag = asyncio.Event()

        async def relay() -> None:
            while stop is not None and not stop.is_set():
                await asyncio.sleep(0.1)
            flag.set()

        relaying = asyncio.create_task(relay()) if stop is not None else None
        try:
            await kopf.operator(
                # kopf types it as its private NewType Identity (a str), which it does not export.
                identity=cast(Any, operator_identity()),
                standalone=args.peering is None,
                peering_name=args.peering,
                clusterwide=not namespaces,
                namespaces=namespaces,
                liveness_endpoint=config.liveness_endpoint or None,
                stop_flag=flag if stop is not None else None,
                # the cleanup handler sets stop_flag: see handlers/startup.py (close)
                memo=kopf.Memo(metrics=metrics, stop_flag=flag, check_leadership=check),
            )
        finally:
            if relaying is not None:
                relaying.cancel()

    def run(stop: threading.Event | None = None, check: Callable[[], None] | None = None) -> None:
        asyncio.run(operate(stop, check))

    if not config.leader_elect:
        metrics.leader.set(1)
        run()
        return 0
    from queuejob import election, kube, standby

    def standby_probe(elector: election.LeaderElector) -> Callable[[], None]:
        def describe() -> dict[str, Any]:
            lock = elector.lock
            return {
                "role": "standby",
                "identity": elector.identity,
                "lease": lock.ref,
                "holder": lock.observed_holder,
            }

        return standby.serve(config.liveness_endpoint, describe)

    return election.run_elected(
        config,
        run,
        api=kube.new_api_client(),
        on_change=lambda leading: metrics.leader.set(1 if leading else 0),
        standby_probe=standby_probe if config.liveness_endpoint else None,
    )


def operator_identity() -> str:
    """This operator's name among peers: ``queuejob@<hostname>`` (the pod's name in a cluster).

    kopf's default asks ``getpass.getuser()``, which raises in a container whose numeric user
    has no passwd entry and no USER/LOGNAME variable: the image's uid 10001, as Kubernetes runs
    it. The host name alone identifies the pod.
    """
    return f"queuejob@{socket.gethostname()}"


def run_seed(args: argparse.Namespace) -> int:
    """Seed a queue from a file and/or arguments; prints how many items were new."""
    from queuejob import redisconn
    from queuejob.spec import SpecError, parse_lines
    from workqueue.config import QueueConfig
    from workqueue.errors import QueueError
    from workqueue.redisqueue import LeaseQueue

    items: list[str] = list(args.items)
    if args.file:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as fh:
                text = fh.read()
        try:
            items.extend(parse_lines(text, args.file)[0])
        except SpecError as exc:
            print(f"queuejob seed: {exc}", file=sys.stderr)
            return 2
    if not items:
        print("queuejob seed: no items given (use --file or arguments)", file=sys.stderr)
        return 2
    client = redisconn.client(args.redis_url, os.environ.get("QUEUEJOB_REDIS_PASSWORD"), 5.0)
    queue = LeaseQueue(client, args.queue)
    try:
        if args.lease_seconds is not None or args.max_attempts is not None:
            kwargs: dict[str, float | int] = {}
            if args.lease_seconds is not None:
                kwargs["lease_seconds"] = args.lease_seconds
            if args.max_attempts is not None:
                kwargs["max_attempts"] = args.max_attempts
            queue.configure(QueueConfig(**kwargs))  # type: ignore[arg-type]
        added = queue.seed(list(dict.fromkeys(items)))
        stats = queue.stats()
    except (QueueError, ValueError) as exc:
        print(f"queuejob seed: {exc}", file=sys.stderr)
        return 1
    print(
        f"queue {args.queue}: {added} new of {wording.count(len(items), 'item')}; "
        f"{stats.pending} pending, {stats.total} total"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``queuejob`` console script."""
    parser = argparse.ArgumentParser(prog="queuejob", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _operator_parser(sub)
    sub.add_parser("worker", help="run the built-in worker (configured by QUEUEJOB_* env)")
    _seed_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "operator":
        return run_operator(args)
    if args.command == "worker":
        from queuejob import worker

        return worker.main()
    return run_seed(args)


if __name__ == "__main__":
    sys.exit(main())
