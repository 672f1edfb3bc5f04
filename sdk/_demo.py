"""`pocketrec demo`: a local web page to try a bundle by hand (catalogue, history, results).

The page is served by the standard library's `http.server` (a `ThreadingHTTPServer`), not by a
web framework: the SDK ships inside client apps with numpy and onnxruntime only, and one local
user clicking through a catalogue needs no more than a threaded server and three JSON routes.
The page itself is one static HTML file with plain JavaScript and CSS (package data next to
this module: `_demo.html`, `_demo.js`, `_demo.css`), with no external assets, so it works
offline.

JSON API (errors are `{"error": message, ...}` with a 4xx status; never a traceback):

    GET  /api/info                           bundle name, catalogue size, limits
    GET  /api/items?q=&offset=&limit=        a page of the catalogue, filtered by `q`
    POST /api/recommend                      {"history": [ids], "k": 10, "personalize": false}
"""

from __future__ import annotations

import ipaddress
import json
import socket
import socketserver
import sys
import traceback
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pocketrec._demo_app import DemoApp, DemoRequestError
from pocketrec._errors import InvalidRequestError, PocketrecError, UnknownItemError
from pocketrec._recommender import Recommender
from pocketrec._version import __version__

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DemoServer", "make_server", "serve"]

DEFAULT_HOST = "127.0.0.1"  # this machine only: the demo has no authentication
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 1 << 20

# Static files by URL path; a fixed table, so no request path ever reaches the file system.
_STATIC = {
    "/": ("_demo.html", "text/html; charset=utf-8"),
    "/demo.js": ("_demo.js", "text/javascript; charset=utf-8"),
    "/demo.css": ("_demo.css", "text/css; charset=utf-8"),
}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Only this server's own files: no CDN, no inline script, no framing.
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'",
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = f"pocketrec-demo/{__version__}"
    timeout = 30  # seconds a silent or half-sent request may hold its thread

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            self._check_host()
            if url.path in _STATIC or url.path == "/favicon.ico":
                self._require(method, "GET")
                self._send_static(url.path)
            elif url.path == "/api/info":
                self._require(method, "GET")
                self._send_json(HTTPStatus.OK, self.server.app.info())
            elif url.path == "/api/items":
                self._require(method, "GET")
                params = parse_qs(url.query, keep_blank_values=True)
                self._send_json(HTTPStatus.OK, self.server.app.items(params))
            elif url.path == "/api/recommend":
                self._require(method, "POST")
                self._send_json(HTTPStatus.OK, self.server.app.recommend(self._read_json()))
            else:
                raise DemoRequestError(HTTPStatus.NOT_FOUND, f"no page or endpoint {url.path!r}")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page moved on (a newer request replaced this one)
        except DemoRequestError as e:
            self._send_json(e.status, {"error": e.message, **e.details}, allow=e.allow)
        except (InvalidRequestError, UnknownItemError) as e:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        except Exception:  # the traceback goes to the server's console, never to the client
            self.log_error("error serving %s %s\n%s", method, url.path, traceback.format_exc())
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "internal error; the console running `pocketrec demo` has details"},
            )

    def _check_host(self) -> None:
        # On loopback, only requests addressed to this machine by name are served, so a web
        # page that re-points its own domain at 127.0.0.1 (DNS rebinding) cannot read the API.
        allowed = self.server.allowed_hosts
        if allowed is not None and self.headers.get("Host", "") not in allowed:
            raise DemoRequestError(
                HTTPStatus.FORBIDDEN,
                f"Host {self.headers.get('Host')!r} is not this server; open {self.server.url}",
            )

    def _require(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise DemoRequestError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{method} is not allowed on {urlsplit(self.path).path}; use {allowed}",
                allow=allowed,
            )

    def _read_json(self) -> Any:
        # Demanding application/json also keeps other sites out: a cross-origin JSON POST
        # needs a CORS preflight, which this server never grants.
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise DemoRequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"send the body as Content-Type: application/json, not {content_type!r}",
            )
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):  # int() rejects "²"
            raise DemoRequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
        if int(length) > MAX_BODY_BYTES:
            raise DemoRequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body has {length} bytes; at most {MAX_BODY_BYTES} are accepted",
            )
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # deep nesting too
            raise DemoRequestError(
                HTTPStatus.BAD_REQUEST, f"the body is not valid UTF-8 JSON: {e}"
            ) from e

    def _send_static(self, path: str) -> None:
        if path == "/favicon.ico":  # browsers ask for one; the page needs none
            self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
            return
        name, content_type = _STATIC[path]
        body = resources.files("pocketrec").joinpath(name).read_bytes()
        self._send(HTTPStatus.OK, body, content_type)

    def _send_json(
        self, status: HTTPStatus, obj: dict[str, Any], *, allow: str | None = None
    ) -> None:
        body = json.dumps(obj, allow_nan=False).encode()
        self._send(status, body, "application/json; charset=utf-8", allow=allow)

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, *, allow: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Each keystroke in the search box is a request; only failures are worth a line.
        if isinstance(code, int) and code >= 400:
            super().log_request(code, size)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DemoServer(ThreadingHTTPServer):
    """A threaded HTTP server for one `DemoApp` (`make_server` builds it)."""

    daemon_threads = True  # Ctrl-C does not wait for open connections

    def __init__(self, app: DemoApp, host: str, port: int) -> None:
        self.app = app
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self.port: int = self.server_address[1]
        if host in ("", "0.0.0.0"):  # every interface: this machine's own address works
            shown = "127.0.0.1"
        elif host == "::":
            shown = "[::1]"
        else:
            shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        loopback_names = {"127.0.0.1", "localhost", "[::1]", shown}  # e.g. --host 127.0.0.2
        hosts = {f"{name}:{self.port}" for name in loopback_names}
        if self.port == 80:  # browsers leave the default port out of Host
            hosts |= loopback_names
        self.allowed_hosts = hosts if _is_loopback(host) else None

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up in DNS (getfqdn), which can stall offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def make_server(
    rec: Recommender, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> DemoServer:
    """A demo server for `rec`, bound but not yet serving (call `serve_forever`).

    Args:
        rec: the Recommender to serve.
        host: the interface to listen on; the default serves this machine only.
        port: the TCP port; 0 picks a free one (read it back from `server.port`).

    Raises:
        PocketrecError: the address cannot be bound (port in use, unknown host).
    """
    try:
        return DemoServer(DemoApp(rec), host, port)
    except OSError as e:
        raise PocketrecError(
            f"cannot listen on {host}:{port}: {e.strerror or e}; pick another port with "
            "--port (0 picks a free one)"
        ) from e


def serve(
    rec: Recommender,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
) -> int:
    """Serve the demo page until Ctrl-C; returns the exit code (0).

    Raises:
        PocketrecError: the port is out of range or cannot be bound.
    """
    if not 0 <= port <= 65535:
        raise PocketrecError(f"--port must be in [0, 65535] (0 picks a free one), got {port}")
    if not _is_loopback(host):
        print(
            f"pocketrec demo: warning: listening on {host!r}, not on this machine only. The demo "
            "has no authentication: anyone who can reach this address can use it. Leave out "
            "--host to serve 127.0.0.1 only.",
            file=sys.stderr,
        )
    server = make_server(rec, host=host, port=port)
    print(
        f"pocketrec demo: {rec.manifest.name} ({len(rec.item_ids):,} items) at {server.url}"
        "\nPress Ctrl-C to stop.",
        flush=True,
    )
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("pocketrec demo: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
