"""The HTTP server of the 1C stand-in: Basic auth, the OData service root, admin endpoints, exchange polling.

Admin endpoints (no auth, never hit by fault rules; for tests and demos)::

    POST /_sandbox/onec/edit            {"set": "...", "ref_key": "...", "changes": {...}}
                                        edit as a 1C user would in the UI: new DataVersion, change registered
                                        (``Posted`` may be set here, as pressing "Post" would)
    GET  /_sandbox/onec/dump?set=...    {"set": ..., "value": [objects as OData writes them]}
    GET  /_sandbox/onec/changes?node=BILLING   registered changes, without stamping them
    POST /_sandbox/onec/exchange/run    process the exchange folder now; {"results": [...]}
"""
from __future__ import annotations

import base64
import binascii
import hmac
import logging
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from urllib.parse import quote, unquote

from ..httpbase import Response, SandboxHandler, SandboxServer
from .errors import UNKNOWN_RESOURCE, ODataError, bad_request
from .exchange import ExchangeFileResult, FileExchange
from .infobase import Infobase
from .odata import ODataRequest, ODataService, json_response
from .store import Store
from .values import loads, parse_guid

log = logging.getLogger(__name__)
ODATA_PATH = "/odata/standard.odata"


class OneCHandler(SandboxHandler):
    server: "OneCServer"
    # Headers and body leave in separate writes; with Nagle on, each answer waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        decoded = unquote(path)
        prefix = self.server.odata_path
        if decoded != prefix and not decoded.startswith(prefix + "/"):
            return ODataError(404, UNKNOWN_RESOURCE, f"Нет публикации по адресу {decoded}").to_response()
        if not self._authenticated():
            return Response(401, "Требуется аутентификация".encode("utf-8"), {
                "WWW-Authenticate": 'Basic realm="1C"', "Content-Type": "text/plain;charset=utf-8",
            })
        host = self.headers.get("Host") or self.server.url.split("://", 1)[1]
        request = ODataRequest(method, decoded[len(prefix):].lstrip("/"), query, self.headers, body,
                               f"http://{host}{quote(prefix)}/")
        return self.server.odata.handle(request)

    def _authenticated(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.server.users.get(user)
        return expected is not None and hmac.compare_digest(expected.encode("utf-8"), password.encode("utf-8"))

    def admin_route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response | None:
        if not path.startswith("/_sandbox/onec/"):
            return None
        try:
            return self._onec_admin(method, path.removeprefix("/_sandbox/onec/"), query, body)
        except ODataError as e:
            return e.to_response()

    def _onec_admin(self, method: str, action: str, query: dict[str, list[str]], body: bytes) -> Response:
        infobase, odata = self.server.infobase, self.server.odata
        if action == "edit" and method == "POST":
            request = loads(body)
            if not isinstance(request, dict) or not isinstance(request.get("changes"), dict):
                raise bad_request('expected {"set": ..., "ref_key": ..., "changes": {...}}')
            entity_set = infobase.entity_set(str(request.get("set")))
            try:
                ref_key = parse_guid(request.get("ref_key"))
            except ValueError as e:
                raise bad_request(str(e)) from e
            record = infobase.update(entity_set.name, ref_key, request["changes"], allow_posted=True)
            return json_response(200, odata.entity_json(entity_set, record, nav_links=False))
        if action == "dump" and method == "GET":
            entity_set = infobase.entity_set((query.get("set") or [""])[0])
            with infobase.store.transaction():
                value = [odata.entity_json(entity_set, r, nav_links=False) for r in infobase.all(entity_set.name)]
            return json_response(200, {"set": entity_set.name, "value": value})
        if action == "changes" and method == "GET":
            node = infobase.node_by_code((query.get("node") or ["BILLING"])[0])
            return json_response(200, {"node": node["Code"], "value": [
                {**asdict(c), "message_no": None if c.message_no is None else str(c.message_no)}
                for c in infobase.pending_changes(node)
            ]})
        if action == "exchange/run" and method == "POST":
            if self.server.exchange is None:
                return Response.json(409, {"error": "this 1C stand-in was started without an exchange_dir"})
            return json_response(200, {"results": [asdict(r) for r in self.server.process_exchange_folder()]})
        return Response.json(404, {"error": f"no admin endpoint {method} /_sandbox/onec/{action}"})


class OneCServer(SandboxServer):
    """The 1C stand-in; ``odata_url`` is the service root clients are given."""

    def __init__(self, address: tuple[str, int], *, db_path: Path, users: Mapping[str, str], base: str,
                 exchange_dir: Path | None, exchange_poll_seconds: float | None):
        store = Store(Path(db_path))
        try:
            infobase = Infobase(store)
            super().__init__(address, OneCHandler, state=infobase)
        except (OSError, sqlite3.Error):
            store.close()
            raise
        self.store, self.infobase = store, infobase
        self.users = dict(users)
        self.odata_path = ("/" + base.strip("/") if base.strip("/") else "") + ODATA_PATH
        self.odata = ODataService(infobase)
        self.exchange = FileExchange(Path(exchange_dir), infobase) if exchange_dir else None
        self.exchange_poll_seconds = exchange_poll_seconds
        self._stop_polling = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def odata_url(self) -> str:
        return f"{self.url}{self.odata_path}/"

    def process_exchange_folder(self) -> list[ExchangeFileResult]:
        """Apply the complete files waiting in the exchange folder's ``in/`` (see ``exchange``)."""
        if self.exchange is None:
            raise RuntimeError("this 1C stand-in was started without an exchange_dir")
        return self.exchange.process_folder()

    def start_in_thread(self) -> threading.Thread:
        # A short poll keeps shutdown() quick; tests and the demo runner restart this server often.
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                  name=type(self).__name__, daemon=True)
        thread.start()
        if self.exchange is not None and self.exchange_poll_seconds and self._poller is None:
            self._poller = threading.Thread(target=self._poll_exchange, name="OneCExchangePoller", daemon=True)
            self._poller.start()
        return thread

    def _poll_exchange(self) -> None:
        while not self._stop_polling.wait(self.exchange_poll_seconds):
            try:
                self.exchange.process_folder()
            except (OSError, sqlite3.Error) as e:
                # A file vanishing mid-run or a locked database is retried on the next tick.
                log.warning("1C stand-in: exchange folder run failed, will retry: %s", e)

    def shutdown(self) -> None:
        self._stop_polling.set()
        super().shutdown()

    def server_close(self) -> None:
        self._stop_polling.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        super().server_close()
        self.store.close()


def make_server(host: str = "127.0.0.1", port: int = 0, *, db_path: Path, users: Mapping[str, str],
                base: str = "/demo", exchange_dir: Path | None = None,
                exchange_poll_seconds: float | None = 5.0) -> OneCServer:
    """A 1C stand-in bound to ``host:port`` (0 picks a free port), keeping its infobase in ``db_path``.

    ``users`` maps Basic-auth user names to passwords. The service root is
    ``srv.url + base + "/odata/standard.odata/"`` (also ``srv.odata_url``). With ``exchange_dir``, its
    ``in/`` is processed every ``exchange_poll_seconds`` once ``start_in_thread()`` runs (None: only on
    demand, through ``process_exchange_folder()`` or ``POST /_sandbox/onec/exchange/run``).
    """
    return OneCServer((host, port), db_path=db_path, users=users, base=base, exchange_dir=exchange_dir,
                      exchange_poll_seconds=exchange_poll_seconds)
