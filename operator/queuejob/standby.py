"""The liveness endpoint of a standby (leader election on, Lease held by another process).

kopf serves ``QUEUEJOB_LIVENESS`` only while it runs, and it runs only on the leader. A standby
serves the same URL itself, answering ``200`` with ``{"role": "standby", ...}`` on its path
(``404`` elsewhere), so that

- liveness holds: a healthy standby is never restarted for not leading;
- readiness holds too (the Deployment probes the same path): a rolling update waits for new
  pods to be Ready, and they start as standbys; with unready standbys it would never finish,
  and the PodDisruptionBudget would count only the leader and block every voluntary eviction.

The server stops (port free again) before kopf starts and binds the same endpoint.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


def serve(endpoint: str, describe: Callable[[], dict[str, Any]]) -> Callable[[], None]:
    """Serve ``endpoint`` (``http://HOST:PORT/PATH``) in a daemon thread; returns ``stop``.

    ``describe()`` is the JSON body of each answer. ``stop()`` closes the socket and returns once
    the server thread has finished (idempotent).
    """
    url = urlsplit(endpoint)
    path = url.path or "/"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if urlsplit(self.path).path != path:
                self.send_error(404)
                return
            body = json.dumps(describe()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per probe would drown the log

    server = ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 80), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="standby-probe", daemon=True)
    thread.start()
    stopped = threading.Lock()

    def stop() -> None:
        with stopped:
            if thread.is_alive():
                server.shutdown()
                server.server_close()
                thread.join()

    return stop
