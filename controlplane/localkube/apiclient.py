"""A tiny HTTPS client for the launcher's own readiness checks (no dependency on a kube client)."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any

from localkube.certs import KeyPair


class ApiProbe:
    """Requests to the API server authenticated with a client certificate."""

    def __init__(
        self,
        port: int,
        ca_cert: Path,
        client: KeyPair,
        timeout: float = 5.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=str(ca_cert))
        self._ssl.load_cert_chain(str(client.cert), str(client.key))

    def get(self, path: str) -> tuple[int, bytes]:
        """(status, body); raises ``OSError`` when the server cannot be reached."""
        return self.request("GET", path)

    def post_json(self, path: str, body: Any) -> tuple[int, bytes]:
        """POST a JSON object; (status, body). Raises ``OSError`` when unreachable."""
        return self.request("POST", path, json.dumps(body).encode())

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; raises ``OSError`` when the server cannot be reached."""
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self._ssl, timeout=self.timeout
        )
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> Any | None:
        """The decoded body of a 200 answer, else None (also when unreachable)."""
        try:
            status, body = self.get(path)
        except OSError:
            return None
        return json.loads(body) if status == 200 else None
