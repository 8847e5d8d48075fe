"""The web server: cheroot (CherryPy's threaded WSGI server) in the daemon's process.

Why this pair: the daemon is threaded, so a threaded WSGI server fits with no second
event loop; cheroot serves each connection from a small fixed thread pool, off the
processing thread, and streams responses chunk by chunk (the live page). bottle is
one module. Together they add about 3 MB of RSS (benchmarks/bench_web.py; Flask with
werkzeug's server cost 7 MB, Falcon with cheroot 6 MB).

:class:`AuthGate` checks every request (the page, the API, clips and the live stream)
when a password is configured: HTTP Basic (any user name; the browser asks once and
sends it with the audio and event-stream requests too) or ``Authorization: Bearer``
for scripts. Without a password (loopback only) :class:`HostGate` refuses requests
for any other host name. The config refuses an address beyond loopback without a password
(listener/config/schema.py). Nothing logs a request's headers.
"""

from __future__ import annotations

import base64
import hmac
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi

from listener.config.schema import WebConfig
from listener.logs import get_logger

log = get_logger("listener.web")

THREADS = 8  # each open page holds one for its live stream (at most app.MAX_LIVE)
Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AuthGate:
    """WSGI middleware: 401 unless the request carries the password."""

    def __init__(self, app: Wsgi, password: str) -> None:
        self.app = app
        self.secret = password.encode("utf-8")

    def allowed(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        given = b""
        if scheme.lower() == "bearer":
            given = value.strip().encode("utf-8")
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
            except ValueError:
                return False
        return bool(given) and hmac.compare_digest(given, self.secret)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if self.allowed(environ.get("HTTP_AUTHORIZATION", "")):
            return self.app(environ, start_response)
        start_response("401 Unauthorized", [
            ("WWW-Authenticate", 'Basic realm="listener", charset="UTF-8"'),
            ("Content-Type", "application/json")])
        return [b'{"error": "password required", "status": 401}']


class HostGate:
    """WSGI middleware for a page without a password (loopback only): refuses requests
    whose ``Host`` is not this machine's loopback name, so a web site that points its
    own name at 127.0.0.1 (DNS rebinding) cannot read the page from a browser here."""

    LOCAL = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})

    def __init__(self, app: Wsgi, host: str) -> None:
        self.app = app
        self.allowed = self.LOCAL | {host}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name in self.allowed:
            return self.app(environ, start_response)
        start_response("403 Forbidden", [("Content-Type", "application/json")])
        return [b'{"error": "unknown Host; open the page as 127.0.0.1", "status": 403}']


def page_url(cfg: WebConfig, port: int | None = None) -> str:
    """The page's address as others reach it (a wildcard bind: this host's name)."""
    host = cfg.host if cfg.host not in ("0.0.0.0", "::", "") else socket.getfqdn()
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port or cfg.port}/"


class WebServer:
    """Serves ``app`` on ``cfg.host:cfg.port`` from its own threads until :meth:`close`."""

    def __init__(self, cfg: WebConfig, app: Wsgi, password: str | None) -> None:
        self.cfg = cfg
        wrapped = AuthGate(app, password) if password else HostGate(app, cfg.host)
        self.server = wsgi.Server((cfg.host, cfg.port), wrapped, numthreads=THREADS,
                                  server_name="listener", timeout=30)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    def start(self) -> None:
        """Bind now (a taken port is a clear error at start-up), then serve in a thread."""
        self.server.prepare()
        self._thread = threading.Thread(target=self.server.serve, name="listener-web",
                                        daemon=True)
        self._thread.start()
        log.info("web page", url=page_url(self.cfg, self.port),
                 password="required" if isinstance(self.server.wsgi_app, AuthGate) else "none")

    def close(self) -> None:
        if self._thread is not None:
            self.server.stop()
            self._thread.join(timeout=5.0)
