"""The viewer behind HTTP: a small standard-library server bound to 127.0.0.1.

Routes::

    GET  /                      the viewer page
    GET  /assets/<file>         its CSS and JavaScript (package data)
    GET  /site/<path>           a static site built by ``needle scope build`` (with ``--site``)
    GET  /api/info              model, layers, neurons, token limit, probes
    POST /api/activations       {"text", "layer", "neuron", "probe"?} → per-token activations

Answers of ``/api`` are JSON. Bad input is a 400 with ``{"error": message}``;
anything unexpected is a 500 with a one-line message (the traceback goes to
the server's log, never to the page).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from needle.errors import InputError, NeedleError
from needle.scope.viewer import Viewer

__all__ = ["make_server", "serve_in_thread", "MAX_BODY_BYTES"]

log = logging.getLogger("needle.scope.server")

#: Largest request body read (the viewer's text limit, with room for JSON escaping).
MAX_BODY_BYTES = 1_000_000


def _asset(name: str) -> bytes | None:
    if "/" in name or name.startswith("."):
        return None
    resource = resources.files("needle.scope").joinpath("static", name)
    return resource.read_bytes() if resource.is_file() else None


def _viewer_page() -> bytes:
    return resources.files("needle.scope").joinpath("templates", "viewer.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _ScopeServer
    server_version = "needle-scope"

    # ------------------------------------------------------------- helpers
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, allow_nan=False).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    # -------------------------------------------------------------- routes
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        try:
            if path == "/api/info" and method == "GET":
                self._json(HTTPStatus.OK, self.server.viewer.info())
            elif path == "/api/activations":
                self._activations(method, url.query)
            elif path.startswith("/api/"):
                self._error(HTTPStatus.NOT_FOUND, f"no such endpoint {path}; use /api/info or /api/activations.")
            elif method != "GET":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}.")
            elif path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, _viewer_page(), "text/html; charset=utf-8")
            elif path.startswith("/assets/"):
                self._static(_asset(path[len("/assets/"):]), path)
            elif path == "/site" or path.startswith("/site/"):
                self._site_file(path[len("/site/"):])
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")
        except NeedleError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except Exception as exc:  # a bug: the log gets the traceback, the page a one-line message
            log.exception("error answering %s %s", method, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(exc).__name__}); see the server log.")

    def _activations(self, method: str, query: str) -> None:
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise InputError(f"the request is {length} bytes; the viewer takes at most {MAX_BODY_BYTES}.")
            raw = self.rfile.read(length)
            try:
                request = json.loads(raw or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise InputError("the request body is not JSON; send {\"text\": ..., \"layer\": ..., "
                                 "\"neuron\": ...}.") from None
            if not isinstance(request, dict):
                raise InputError("the request body must be a JSON object.")
        else:
            request = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
        unknown = set(request) - {"text", "layer", "neuron", "probe"}
        if unknown:
            raise InputError(f"unknown fields {sorted(unknown)}; send text, layer, neuron and optionally probe.")
        answer = self.server.viewer.activations(request.get("text", ""), layer=_blank_to_none(request.get("layer")),
                                                neuron=_blank_to_none(request.get("neuron")),
                                                probe=request.get("probe") or None)
        self._json(HTTPStatus.OK, answer)

    def _static(self, body: bytes | None, path: str) -> None:
        if body is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")
            return
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type.endswith("javascript"):
            content_type += "; charset=utf-8"
        self._send(HTTPStatus.OK, body, content_type)

    def _site_file(self, relative: str) -> None:
        root = self.server.site_dir
        if root is None:
            self._send(HTTPStatus.NOT_FOUND, b"no site: start the viewer with --site DIR", "text/plain; charset=utf-8")
            return
        target = (root / (relative or "index.html")).resolve()
        if target.is_dir():
            target = target / "index.html"
        if root not in target.parents and target != root:  # no ../ escapes from the site
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")
            return
        self._static(target.read_bytes() if target.is_file() else None, str(target))


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


class _ScopeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], viewer: Viewer, site_dir: Path | None):
        self.viewer = viewer
        self.site_dir = None if site_dir is None else Path(site_dir).resolve()
        super().__init__(address, _Handler)


def make_server(viewer: Viewer, *, host: str = "127.0.0.1", port: int = 8765,
                site_dir: str | os.PathLike | None = None) -> ThreadingHTTPServer:
    """A server for ``viewer`` bound to ``host:port`` (port 0 picks a free one); call ``serve_forever()``.

    Raises
    ------
    InputError
        The port is taken or cannot be bound.
    """
    try:
        return _ScopeServer((host, int(port)), viewer, None if site_dir is None else Path(site_dir))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port.") from None


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread (for tests and notebooks); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="needle-scope", daemon=True)
    thread.start()
    return thread
