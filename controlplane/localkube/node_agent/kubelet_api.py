"""The agent's slice of the kubelet API: container logs, so ``kubectl logs`` works.

The API server proxies ``pods/log`` to ``https://<node InternalIP>:<kubeletEndpoint port>/
containerLogs/<namespace>/<pod>/<container>``. This server answers that path (plus ``/healthz``)
from the agent's log files, over TLS with the node's serving certificate, and only to clients
presenting a certificate of the cluster CA (the API server's kubelet-client certificate).
Supported query parameters: ``follow``, ``tailLines``, ``limitBytes``; exec, attach and
port-forward are not implemented (the agent is dev/test tooling).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from localkube.podlogs import pod_log_path

log = logging.getLogger("localkube.node_agent")
FOLLOW_POLL = 0.2


class KubeletLogServer:
    """HTTPS server on 127.0.0.1 (free port) serving container log files."""

    def __init__(
        self,
        state_dir: Path,
        cert: Path,
        key: Path,
        client_ca: Path,
        is_active: Callable[[str, str], bool],
    ) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(client_ca))
        handler = _handler(state_dir, is_active)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="kubelet-api", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()


def _handler(
    state_dir: Path, is_active: Callable[[str, str], bool]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            log.debug("kubelet api: " + format, *args)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/healthz":
                self._send(200, b"ok")
                return
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self._send(404, b"not supported by the localkube node agent\n")
                return
            _, namespace, pod, container = parts
            path = pod_log_path(state_dir, namespace, pod, container)
            if not path.is_file():
                self._send(404, f"no logs for {namespace}/{pod}/{container}\n".encode())
                return
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            data = path.read_bytes()
            if "tailLines" in query:
                lines = data.splitlines(keepends=True)
                data = (
                    b"".join(lines[-int(query["tailLines"]) :]) if int(query["tailLines"]) else b""
                )
            if "limitBytes" in query:
                data = data[: int(query["limitBytes"])]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                self.wfile.write(data)
                if query.get("follow") in ("true", "1"):
                    self._follow(path, path.stat().st_size, namespace, pod)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                return

        def _follow(self, path: Path, offset: int, namespace: str, pod: str) -> None:
            while True:
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                if chunk:
                    offset += len(chunk)
                    self.wfile.write(chunk)
                    self.wfile.flush()
                elif not is_active(namespace, pod):
                    return
                time.sleep(FOLLOW_POLL)

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
