"""A minimal REST helper over pykube-ng's authenticated session (JSON dicts in and out)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykube
import requests


class ApiError(Exception):
    """A non-2xx answer: ``status`` and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Api:
    """``request(method, path)`` against the API server of a kubeconfig."""

    def __init__(self, kubeconfig: Path, timeout: float = 15.0) -> None:
        self._http = pykube.HTTPClient(pykube.KubeConfig.from_file(str(kubeconfig)))
        self._base = str(self._http.url).rstrip("/")
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send ``body`` as JSON; return the decoded answer.

        Raises :class:`ApiError` on a non-2xx answer, and with status 0 when the server cannot be
        reached, so callers handle one exception type.
        """
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        try:
            response = self._http.session.request(
                method,
                self._base + path,
                data=data,
                params=params,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise ApiError(0, f"{method} {path}: {exc}") from exc
        return self._decode(response)

    def retrying(
        self, method: str, path: str, body: Any = None, *, attempts: int = 5, **kwargs: Any
    ) -> Any:
        """:meth:`request`, retried with back-off (0.5 s doubling) on 5xx, 429 and no answer."""
        for attempt in range(attempts):
            try:
                return self.request(method, path, body, **kwargs)
            except ApiError as exc:
                transient = exc.status in (0, 429) or exc.status >= 500
                if not transient or attempt == attempts - 1:
                    raise
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _decode(response: requests.Response) -> Any:
        if response.status_code >= 300:
            try:
                message = str(response.json().get("message", response.text))
            except ValueError:
                message = response.text
            raise ApiError(response.status_code, message)
        return response.json() if response.content else None

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def merge_patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def watch(self, path: str, params: dict[str, str], timeout: float) -> Iterator[dict[str, Any]]:
        """Stream watch events (``{"type", "object"}``) until the server closes the stream."""
        query = {**params, "watch": "1", "allowWatchBookmarks": "true"}
        with self._http.session.get(
            self._base + path, params=query, stream=True, timeout=(5.0, timeout)
        ) as response:
            if response.status_code >= 300:
                self._decode(response)
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)
