"""A small HTTP server base shared by the HTTP stand-ins, with switchable misbehaviour.

Handlers return a ``Response`` instead of writing to the socket, so the fault layer can decide, after the
change was applied, to drop the answer (the "dropped response" case that idempotent loads must survive).

Faults are rules posted as JSON to ``/_sandbox/faults`` on any stand-in (``DELETE`` clears them)::

    [{"mode": "error", "status": 503, "count": 2, "methods": ["POST"], "path": "/odata"},
     {"mode": "latency", "seconds": 0.5},
     {"mode": "timeout", "seconds": 30, "count": 1},
     {"mode": "drop_after_apply", "count": 1, "methods": ["POST", "PATCH"]}]

An ``error`` rule may carry ``"retry_after": seconds`` (sent as ``Retry-After``, as rate limits answer 429).
``after`` lets that many matching requests through before the rule starts (to make faults follow each other);
``count`` is how many matching requests the rule hits (omit or -1 for all); ``rate`` (0..1) makes it
random with the server's seeded generator; ``path`` is a prefix of the request path.
"""
from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FAULT_MODES = {"error", "latency", "timeout", "drop_after_apply"}


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload, headers: dict[str, str] | None = None) -> "Response":
        body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        h = {"Content-Type": "application/json; charset=utf-8"}
        h.update(headers or {})
        return cls(status, body, h)


class FaultPlan:
    """Thread-safe list of fault rules; each request asks which rules fire for it."""

    def __init__(self, seed: int = 7):
        self._rules: list[dict] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def set(self, rules: list[dict]) -> None:
        for rule in rules:
            if rule.get("mode") not in FAULT_MODES:
                raise ValueError(f"unknown fault mode {rule.get('mode')!r}; known: {sorted(FAULT_MODES)}")
        with self._lock:
            self._rules = [dict(r) for r in rules]

    def clear(self) -> None:
        self.set([])

    def rules(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._rules]

    def fire(self, method: str, path: str) -> list[dict]:
        """Rules that apply to this request, consuming one unit of each rule's ``count``."""
        fired = []
        with self._lock:
            for rule in self._rules:
                if rule.get("methods") and method not in rule["methods"]:
                    continue
                if rule.get("path") and not path.startswith(rule["path"]):
                    continue
                if rule.get("after", 0) > 0:
                    rule["after"] -= 1
                    continue
                count = rule.get("count", -1)
                if count == 0:
                    continue
                if "rate" in rule and self._random.random() >= float(rule["rate"]):
                    continue
                if count > 0:
                    rule["count"] = count - 1
                fired.append(dict(rule))
        return fired


class SandboxServer(ThreadingHTTPServer):
    """A threading HTTP server that owns a ``FaultPlan``; ``state`` is whatever the stand-in keeps."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler_cls, state=None):
        super().__init__(address, handler_cls)
        self.faults = FaultPlan()
        self.state = state

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=type(self).__name__, daemon=True)
        thread.start()
        return thread


class SandboxHandler(BaseHTTPRequestHandler):
    """Subclasses implement ``route(method, path, query, body) -> Response``."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each keep-alive answer waits ~40 ms.
    disable_nagle_algorithm = True
    server: SandboxServer

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        # Keep test and demo output quiet; the stand-ins are not what a user debugs.
        pass

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        raise NotImplementedError

    def admin_route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response | None:
        """A stand-in's own ``/_sandbox/...`` endpoints; ``None`` falls back to the shared ones (faults, health).

        Admin paths bypass the fault rules: tests must be able to inspect and repair a misbehaving stand-in.
        """
        return None

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if parts.path.startswith("/_sandbox/"):
            query = parse_qs(parts.query, keep_blank_values=True)
            response = self.admin_route(method, parts.path, query, body)
            return self._write(response if response is not None else self._admin(method, parts.path, body))
        fired = self.server.faults.fire(method, parts.path)
        for rule in fired:
            if rule["mode"] == "latency":
                time.sleep(float(rule.get("seconds", 0.2)))
        for rule in fired:
            if rule["mode"] == "timeout":
                time.sleep(float(rule.get("seconds", 30)))
                self.close_connection = True
                return None
            if rule["mode"] == "error":
                status = int(rule.get("status", 503))
                headers = {"Retry-After": str(rule["retry_after"])} if "retry_after" in rule else None
                return self._write(Response.json(status, {"error": "injected fault", "status": status}, headers))
        response = self.route(method, parts.path, parse_qs(parts.query, keep_blank_values=True), body)
        if any(rule["mode"] == "drop_after_apply" for rule in fired):
            # The change is applied; the client never hears back.
            self.close_connection = True
            return None
        return self._write(response)

    def _admin(self, method: str, path: str, body: bytes) -> Response:
        if path == "/_sandbox/health":
            return Response.json(200, {"ok": True})
        if path == "/_sandbox/faults":
            if method == "GET":
                return Response.json(200, self.server.faults.rules())
            if method == "DELETE":
                self.server.faults.clear()
                return Response.json(200, [])
            if method in ("POST", "PUT"):
                try:
                    self.server.faults.set(json.loads(body or b"[]"))
                except (ValueError, TypeError) as e:
                    return Response.json(400, {"error": str(e)})
                return Response.json(200, self.server.faults.rules())
        return Response.json(404, {"error": f"no admin endpoint {path}"})

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        headers = dict(response.headers)
        headers.setdefault("Content-Length", str(len(response.body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")


def set_faults(base_url: str, rules: list[dict]) -> None:
    """Client helper for tests and the README: replace a stand-in's fault rules."""
    import urllib.request

    req = urllib.request.Request(
        base_url.rstrip("/") + "/_sandbox/faults", data=json.dumps(rules).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()
