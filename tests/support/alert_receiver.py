"""A real HTTP server that keeps every JSON body posted to it, for tests: as an
Alertmanager's webhook receiver (what people would be told), or given to the engine as an
"Alertmanager" to see exactly what the engine posts (``/api/v2/alerts``)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AlertReceiver:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []      # (path, parsed JSON), in arrival order
        self._lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with received._lock:
                    received.bodies.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AlertReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def posted(self, path: str) -> list[Any]:
        with self._lock:
            return [body for where, body in self.bodies if where == path]

    def notifications(self) -> list[dict[str, Any]]:
        """What an Alertmanager sent to the receiver (``/hook``), in order."""
        return self.posted("/hook")

    def told(self, alertname: str, status: str = "firing") -> list[dict[str, Any]]:
        """Every alert of that name, in that status, across the notifications received
        (one entry per notification that carried it)."""
        return [a for n in self.notifications() for a in n["alerts"]
                if a["labels"]["alertname"] == alertname and a["status"] == status]

    def engine_posts(self) -> list[list[dict[str, Any]]]:
        """The batches the engine posted here, as to an Alertmanager."""
        return self.posted("/api/v2/alerts")
