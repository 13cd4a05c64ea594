"""The worker's HTTP endpoint: ``/metrics`` for Prometheus, ``/healthz`` (liveness) and ``/readyz`` (readiness).

``/healthz`` answers 200 while the process runs, with the same one-line status as ``/readyz``: a worker waiting
for Redis is alive and must not be restarted (a restart would not bring Redis back, and would rebalance the group).
``/readyz`` answers 503 with ``redis unavailable since <UTC time> (<error class>); retrying`` while the worker waits
for Redis, 200 ``ok`` otherwise. Bodies never carry patient data. Served on its own thread, like the Prometheus
client's own server, so it answers even while the event loop is busy. With a token (``TWINMON_METRICS_TOKEN``)
``/metrics`` answers 401 unless the request carries ``Authorization: Bearer <token>``; the probes stay open (the
kubelet sends no credentials, and they say only whether the worker is ready).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

Status = Callable[[], str]
"""Returns "ok" when ready, otherwise the reason it is not."""


def health_app(registry: CollectorRegistry, status: Status,
               token: str | None = None) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)
    wanted = f"Bearer {token}".encode() if token else None

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/readyz"):
            given = environ.get("HTTP_AUTHORIZATION", "").encode()
            if wanted is not None and not hmac.compare_digest(given, wanted):
                body = b"the metrics need the bearer token (TWINMON_METRICS_TOKEN)\n"
                start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                                    ("Content-Length", str(len(body))),
                                                    ("WWW-Authenticate", 'Bearer realm="twinmon-metrics"')])
                return [body]
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        text = status()
        ready = text == "ok"
        code = "200 OK" if ready or path == "/healthz" else "503 Service Unavailable"
        body = (text + "\n").encode()
        start_response(code, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                              ("Cache-Control", "no-store")])
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log."""


def serve(host: str, port: int, registry: CollectorRegistry, status: Status, token: str | None = None) -> WSGIServer:
    """Start serving on a daemon thread; returns the server (``shutdown()`` stops it)."""
    server = make_server(host, port, health_app(registry, status, token), server_class=_Server,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="twinmon-http", daemon=True).start()
    return server
