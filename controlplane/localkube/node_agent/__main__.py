"""``python -m localkube.node_agent --kubeconfig K --node-name N --state-dir D`` (dev/test only)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from localkube.node_agent.agent import NodeAgent
from localkube.node_agent.api import Api
from localkube.node_agent.kubelet_api import KubeletLogServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localkube-node-agent", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--serving-cert", type=Path, help="TLS certificate of the logs endpoint")
    parser.add_argument("--serving-key", type=Path)
    parser.add_argument("--client-ca", type=Path, help="CA of clients allowed to read logs")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    state_dir = args.state_dir.absolute()
    server: KubeletLogServer | None = None
    agent_ref: list[NodeAgent] = []
    if args.serving_cert and args.serving_key and args.client_ca:
        server = KubeletLogServer(
            state_dir,
            args.serving_cert,
            args.serving_key,
            args.client_ca,
            lambda ns, pod: agent_ref[0].is_active(ns, pod),
        )
        server.start()
    agent = NodeAgent(Api(args.kubeconfig), args.node_name, state_dir, server.port if server else 0)
    agent_ref.append(agent)
    done = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("localkube.node_agent").info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = threading.Thread(target=agent.run, name="pod-watch", daemon=True)
    worker.start()
    while not done.wait(0.5):
        if not worker.is_alive():
            return 1
    agent.shutdown()
    if server is not None:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
