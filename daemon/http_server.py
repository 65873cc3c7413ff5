"""Serves /metrics (Prometheus exposition) and /healthz (200 when healthy, 503 otherwise, with why)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from daemon.errors import ConfigError


def serve(
    host: str, port: int, registry: CollectorRegistry, health: Callable[[], tuple[bool, str]]
) -> ThreadingHTTPServer:
    """Starts the server on a daemon thread; port 0 picks a free port (see ``server_address``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                healthy, why = health()
                self._send(200 if healthy else 503, why.encode("utf-8") + b"\n", "text/plain")
            else:
                self._send(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise ConfigError(
            f"config key 'metrics': cannot serve metrics on {host}:{port} ({exc.strerror}); another process "
            "(another faultcast?) may hold the port: set metrics.port or metrics.host"
        ) from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="faultcast-http", daemon=True).start()
    return server
