"""A stand-in for the Home Assistant Supervisor's ``GET /services/mqtt``, on loopback.

A real HTTP server (http.server, in a thread) that checks the bearer token as the
Supervisor does and answers what the test sets: the broker (status 200 and the
Supervisor's ``{"result": "ok", "data": {...}}``), no broker (400), or garbage. Used by
tests/test_addon.py and by script/test-image for the add-on image.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "test-supervisor-token"
BROKER = {"addon": "core_mosquitto", "host": "core-mosquitto", "port": 1883, "ssl": False,
          "protocol": "3.1.1", "username": "addons", "password": "s3cret pw"}


def broker_answer(**data: Any) -> tuple[int, bytes]:
    return 200, json.dumps({"result": "ok", "data": data}).encode()


@dataclass
class Supervisor:
    """Serves until :meth:`close`; ``answer`` is (HTTP status, body) of /services/mqtt."""

    host: str
    port: int
    answer: tuple[int, bytes] = field(default_factory=lambda: broker_answer(**BROKER))
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    status, body = 401, b'{"result": "error", "message": "Unauthorized"}'
                elif self.path != "/services/mqtt":
                    status, body = 404, b'{"result": "error"}'
                else:
                    status, body = stub.answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
