"""An ``mlflow server`` on 127.0.0.1 for the bench scripts, and calls of its REST API (what the UI loads)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_server(store_uri: str, timeout: float = 120) -> Iterator[str | None]:
    """Serve ``store_uri`` on a free loopback port; yields the base URL (None if it did not come up)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    yield None
                    return
                time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # its job-queue workers can ignore SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)


def call(base: str, path: str, body: dict[str, Any] | None = None, timeout: float = 60) -> Any:
    """GET (no body) or POST JSON to the server; the decoded JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{base}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def search_runs(base: str, experiment_id: str, **extra: Any) -> list[dict[str, Any]]:
    """Every run of the experiment, page by page, as the UI's runs table asks for them."""
    out, token = [], None
    while True:
        body = {"experiment_ids": [experiment_id], "max_results": 1000, **extra,
                **({"page_token": token} if token else {})}
        page = call(base, "/ajax-api/2.0/mlflow/runs/search", body)
        out += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return out
