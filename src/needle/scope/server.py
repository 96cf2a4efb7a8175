"""The viewer behind HTTP: a small standard-library server bound to 127.0.0.1.

Routes::

    GET  /                      the viewer page
    GET  /assets/<file>         its CSS and JavaScript (package data)
    GET  /site/<path>           a static site built by ``needle scope build`` (with ``--site``)
    GET  /api/info              model, layers, neurons, token limit, probes
    POST /api/activations       {"text", "layer", "neuron", "probe"?} → per-token activations
    GET  /api/notes             {"notes": {neuron id: text}, "path"} (with ``--site``)
    POST /api/notes             {"neuron", "text"} → saved in ``<site>.notes.json`` beside the site

Notes live beside the site rather than in it because ``needle scope build`` replaces the site's directory; the
file is rewritten atomically (a temporary file renamed over it) under a lock, so a crash or two tabs saving
at once never leave half a file.

Answers of ``/api`` are JSON. Bad input is a 400 with ``{"error": message}``;
anything unexpected is a 500 with a one-line message (the traceback goes to
the server's log, never to the page).

The server runs a model for whoever can reach it, so it answers only
requests meant for it: the ``Host`` header must name a loopback address
(which defeats DNS rebinding: a page of ``evil.example`` that resolves to
127.0.0.1 still sends ``Host: evil.example``), and a request from a browser
page of another origin (``Origin``, or ``Sec-Fetch-Site: cross-site``) is
refused with a 403. Sockets time out (:data:`SOCKET_TIMEOUT`), so a slow or
stalled client cannot hold a thread for ever; the listen backlog
(:data:`LISTEN_BACKLOG`) takes bursts of connections; the ``Server`` header
names needle only, not the Python version.
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

__all__ = ["make_server", "serve_in_thread", "notes_path", "read_notes", "save_note", "MAX_BODY_BYTES",
           "SOCKET_TIMEOUT", "LISTEN_BACKLOG", "LOOPBACK_HOSTS", "MAX_NOTE_CHARS"]

log = logging.getLogger("needle.scope.server")

#: Largest request body read (the viewer's text limit, with room for JSON escaping).
MAX_BODY_BYTES = 1_000_000
#: Seconds a connection may stay silent (reading a request or writing an answer) before it is closed.
SOCKET_TIMEOUT = 30.0
#: Connections waiting to be accepted (the standard library's default of 5 resets a burst of clients).
LISTEN_BACKLOG = 128
#: Host names the viewer answers to.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Longest note kept per neuron.
MAX_NOTE_CHARS = 20_000
#: ``format`` of a notes file.
NOTES_FORMAT = "needle.ScopeNotes"
_notes_lock = threading.Lock()


def notes_path(site_dir: str | os.PathLike) -> Path:
    """Where the notes of the site in ``site_dir`` are kept: ``<site_dir>.notes.json`` beside it."""
    site_dir = Path(site_dir)
    return site_dir.parent / f"{site_dir.name}.notes.json"


def read_notes(path: str | os.PathLike) -> dict[str, str]:
    """The notes of a notes file, ``{neuron id: text}`` (empty when there is no file yet).

    Raises
    ------
    FormatError
        The file is not a notes file.
    """
    from needle.errors import FormatError

    path = Path(path)
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path} is not a notes file ({exc}); move it away to start new notes.") from None
    if not isinstance(payload, dict) or payload.get("format") != NOTES_FORMAT or not isinstance(
            payload.get("notes"), dict):
        raise FormatError(f"{path} is not a notes file (format {NOTES_FORMAT!r}); move it away to start new notes.")
    return {str(k): str(v) for k, v in payload["notes"].items()}


def save_note(path: str | os.PathLike, neuron: Any, text: Any) -> dict[str, str]:
    """Set (or, with empty ``text``, remove) the note of ``neuron`` (an id such as ``L3.N1201``) in the notes
    file at ``path``, rewritten atomically; returns all the notes."""
    from needle._io import atomic_file
    from needle.scope.tables import parse_neuron_id

    if not isinstance(neuron, str) or not neuron.strip():
        raise InputError("a note needs the neuron's id, e.g. {\"neuron\": \"L3.N1201\", \"text\": ...}.")
    try:
        neuron_id = parse_neuron_id(neuron).id
    except (NeedleError, ValueError):
        raise InputError(f"{neuron!r} is not a neuron id; write it like L3.N1201.") from None
    if not isinstance(text, str):
        raise InputError("the note's text must be a string.")
    if len(text) > MAX_NOTE_CHARS:
        raise InputError(f"the note has {len(text)} characters; a note holds at most {MAX_NOTE_CHARS}.")
    with _notes_lock:
        notes = read_notes(path)
        if text.strip():
            notes[neuron_id] = text
        else:
            notes.pop(neuron_id, None)
        with atomic_file(path, "w") as handle:
            json.dump({"format": NOTES_FORMAT, "version": 1, "notes": dict(sorted(notes.items()))}, handle,
                      indent=1, ensure_ascii=False)
    return notes


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
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.socket_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    def version_string(self) -> str:
        return self.server_version

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

    def _foreign(self) -> str | None:
        """Why this request is not for this server (another Host, a page of another origin), or None."""
        host = _hostname(self.headers.get("Host"))
        if host not in self.server.allowed_hosts:
            return (f"the viewer answers only requests to {', '.join(sorted(self.server.allowed_hosts))}, "
                    f"not Host {self.headers.get('Host')!r}.")
        origin = self.headers.get("Origin")
        if origin is not None:
            parts = urlsplit(origin)
            port = parts.port if parts.port else {"http": 80, "https": 443}.get(parts.scheme)
            if parts.scheme != "http" or _hostname(parts.netloc) not in self.server.allowed_hosts \
                    or port != self.server.server_address[1]:
                return f"requests from pages of another origin ({origin}) are refused."
        if self.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
            return "requests from pages of other sites are refused."
        return None

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        foreign = self._foreign()
        if foreign is not None:
            self._error(HTTPStatus.FORBIDDEN, foreign)
            return
        try:
            if path == "/api/info" and method == "GET":
                self._json(HTTPStatus.OK, self.server.viewer.info())
            elif path == "/api/activations":
                self._activations(method, url.query)
            elif path == "/api/notes":
                self._notes(method)
            elif path.startswith("/api/"):
                self._error(HTTPStatus.NOT_FOUND, f"no such endpoint {path}; use /api/info, /api/activations or "
                                                  "/api/notes.")
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

    def _body(self, example: str) -> dict:
        """The request's JSON object body (``example`` shows what to send)."""
        text = (self.headers.get("Content-Length") or "0").strip()
        if not text.isdigit():  # int() would take "-1", and rfile.read(-1) waits for the client to close
            raise InputError(f"Content-Length {text!r} is not a byte count.")
        length = int(text)
        if length > MAX_BODY_BYTES:
            raise InputError(f"the request is {length} bytes; the viewer takes at most {MAX_BODY_BYTES}.")
        raw = self.rfile.read(length)
        try:
            request = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"the request body is not JSON; send {example}.") from None
        if not isinstance(request, dict):
            raise InputError("the request body must be a JSON object.")
        return request

    def _notes(self, method: str) -> None:
        if self.server.site_dir is None:
            self._error(HTTPStatus.NOT_FOUND, "no site, so nowhere to keep notes: start the viewer with --site DIR.")
            return
        path = notes_path(self.server.site_dir)
        if method == "POST":
            request = self._body('{"neuron": "L3.N1201", "text": ...}')
            unknown = set(request) - {"neuron", "text"}
            if unknown:
                raise InputError(f"unknown fields {sorted(unknown)}; send neuron and text.")
            notes = save_note(path, request.get("neuron"), request.get("text", ""))
        else:
            notes = read_notes(path)
        self._json(HTTPStatus.OK, {"notes": notes, "path": path.name})

    def _activations(self, method: str, query: str) -> None:
        if method == "POST":
            request = self._body('{"text": ..., "layer": ..., "neuron": ...}')
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


def _hostname(host: str | None) -> str | None:
    """``"127.0.0.1:8765"`` → ``"127.0.0.1"``, ``"[::1]:8765"`` → ``"::1"``, lower case; None when unparsable."""
    if not host:
        return None
    try:
        return urlsplit(f"//{host.strip()}").hostname
    except ValueError:
        return None


def _blank_to_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


class _ScopeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], viewer: Viewer, site_dir: Path | None, socket_timeout: float):
        self.viewer = viewer
        self.site_dir = None if site_dir is None else Path(site_dir).resolve()
        self.socket_timeout = socket_timeout
        bound = _hostname(address[0])
        self.allowed_hosts = LOOPBACK_HOSTS | ({bound} if bound and bound not in ("0.0.0.0", "::") else set())
        super().__init__(address, _Handler)


def make_server(viewer: Viewer, *, host: str = "127.0.0.1", port: int = 8765,
                site_dir: str | os.PathLike | None = None, socket_timeout: float = SOCKET_TIMEOUT
                ) -> ThreadingHTTPServer:
    """A server for ``viewer`` bound to ``host:port`` (port 0 picks a free one); call ``serve_forever()``.

    ``socket_timeout`` is how many seconds a connection may stay silent before it is closed.

    Raises
    ------
    InputError
        The port is taken or cannot be bound.
    """
    try:
        return _ScopeServer((host, int(port)), viewer, None if site_dir is None else Path(site_dir),
                            float(socket_timeout))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port.") from None


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread (for tests and notebooks); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="needle-scope", daemon=True)
    thread.start()
    return thread
