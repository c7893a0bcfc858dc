"""The HTTP server of the 1C stand-in: Basic auth, the OData service root, admin endpoints, exchange polling.

The web server in front (DESIGN §8: publications sit behind IIS or Apache), as far as clients can see it:

* URL limits. A query string longer than ``max_query_string`` bytes (as sent, percent-encoded; IIS request
  filtering's ``maxQueryString``, 2,048 by default) is answered as IIS does: 404 with its HTML page for
  substatus 404.15 "Query String Too Long". A request line longer than ``max_request_line`` (16,384 by
  default, http.sys's URL limit; Apache's ``LimitRequestLine`` is 8,190) is 414. Either limit ``None``: off.
* Failed logins. 401 with a Basic challenge by default; with ``login_page=True`` a failed login is answered
  as some publications behind a web-server login form do: an HTML page with status 200.

Sessions and server time. Requests are served concurrently, one thread each (a 1C server runs several working
processes); the infobase is one SQLite file written one transaction at a time. ``latency_seconds`` adds the time
a real base spends on each OData request (a real 1C answers in about 10 to 50 ms: the platform's object model,
its own database, posting), spent outside the store's lock, so concurrent sessions overlap it as a real server's
working processes do. 0 (the default): answer at once.

Admin endpoints (no auth, never hit by fault rules; for tests and demos)::

    POST /_sandbox/onec/edit            {"set": "...", "ref_key": "...", "changes": {...}}
                                        edit as a 1C user would in the UI: new DataVersion, change registered
                                        (``Posted`` may be set here, as pressing "Post" would)
    GET  /_sandbox/onec/dump?set=...    {"set": ..., "value": [objects as OData writes them]}
    GET  /_sandbox/onec/changes?node=BILLING   registered changes, without stamping them
    GET  /_sandbox/onec/sessions        {"requests": n, "in_flight": n, "most_in_flight": n}: OData requests
                                        answered, being answered now, and the most at once (``?reset=1`` zeroes)
    POST /_sandbox/onec/exchange/run    process the exchange folder now; {"results": [...]}
    POST /_sandbox/onec/bank/import     import the bank statement's pending lines now (``bank``);
                                        {"imported": n, "waiting": n}; the exchange poller does it too
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from urllib.parse import quote, unquote

from ..httpbase import Response, SandboxHandler, SandboxServer
from .errors import UNKNOWN_RESOURCE, ODataError, bad_request
from .bank import BankStatementImport
from .exchange import ExchangeFileResult, FileExchange
from .infobase import DEFAULT_NODES, Infobase
from .odata import ODataRequest, ODataService, json_response
from .store import Store
from .values import loads, parse_guid

log = logging.getLogger(__name__)
ODATA_PATH = "/odata/standard.odata"
IIS_MAX_QUERY_STRING = 2048  # IIS request filtering, maxQueryString
HTTP_SYS_MAX_URL = 16384  # http.sys, MaxFieldLength / URL limit
IIS_404_15_PAGE = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>IIS 10.0 Detailed Error - 404.15 - Not Found</title></head>
<body><div id="content"><h3>HTTP Error 404.15 - Not Found</h3>
<h4>The request filtering module is configured to deny a request where the query string is too long.</h4>
<p>Query string length: {length} bytes; maxQueryString: {limit}.</p>
<p>Verify the configuration/system.webServer/security/requestFiltering/requestLimits@maxQueryString setting.</p>
</div></body></html>"""
IIS_414_PAGE = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN">
<html><head><title>Request URL Too Long</title></head>
<body><h2>Request URL Too Long</h2><hr><p>HTTP Error 414. The request URL is too long.</p></body></html>"""
LOGIN_PAGE = """<!DOCTYPE html>
<html lang="ru"><head><meta charset="utf-8"><title>Вход в систему</title></head>
<body><form method="post" action="/login"><h1>1С:Предприятие</h1><p>Неверное имя пользователя или пароль</p>
<label>Пользователь <input name="user"></label><label>Пароль <input name="password" type="password"></label>
<button type="submit">Войти</button></form></body></html>"""


class OneCHandler(SandboxHandler):
    server: "OneCServer"
    # Headers and body leave in separate writes; with Nagle on, each answer waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        too_long = self._url_limit()
        if too_long is not None:
            return too_long
        decoded = unquote(path)
        prefix = self.server.odata_path
        if decoded != prefix and not decoded.startswith(prefix + "/"):
            return ODataError(404, UNKNOWN_RESOURCE, f"Нет публикации по адресу {decoded}").to_response()
        if not self._authenticated():
            if self.server.login_page:
                return Response(200, LOGIN_PAGE.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})
            return Response(401, "Требуется аутентификация".encode("utf-8"), {
                "WWW-Authenticate": 'Basic realm="1C"', "Content-Type": "text/plain;charset=utf-8",
            })
        host = self.headers.get("Host") or self.server.url.split("://", 1)[1]
        request = ODataRequest(method, decoded[len(prefix):].lstrip("/"), query, self.headers, body,
                               f"http://{host}{quote(prefix)}/")
        with self.server.sessions.serving():
            if self.server.latency_seconds:
                time.sleep(self.server.latency_seconds)  # the base's own work on the request, see the module
            return self.server.odata.handle(request)

    def _url_limit(self) -> Response | None:
        """The web server's answer to a URL over its limits, before the request reaches 1C."""
        line_limit, query_limit = self.server.max_request_line, self.server.max_query_string
        if line_limit is not None and len(self.requestline.encode("latin-1", "replace")) > line_limit:
            return Response(414, IIS_414_PAGE.encode("utf-8"), {"Content-Type": "text/html; charset=us-ascii"})
        query = self.path.partition("?")[2]
        if query_limit is not None and len(query.encode("latin-1", "replace")) > query_limit:
            return Response(404, IIS_404_15_PAGE.format(length=len(query), limit=query_limit).encode("utf-8"),
                            {"Content-Type": "text/html; charset=utf-8"})
        return None

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
        if action == "sessions" and method == "GET":
            return json_response(200, self.server.sessions.counts(reset=(query.get("reset") or [""])[0] == "1"))
        if action == "exchange/run" and method == "POST":
            if self.server.exchange is None:
                return Response.json(409, {"error": "this 1C stand-in was started without an exchange_dir"})
            return json_response(200, {"results": [asdict(r) for r in self.server.process_exchange_folder()]})
        if action == "bank/import" and method == "POST":
            if self.server.bank is None:
                return Response.json(409, {"error": "this 1C stand-in was started without a bank_statement"})
            return json_response(200, self.server.bank.import_pending())
        return Response.json(404, {"error": f"no admin endpoint {method} /_sandbox/onec/{action}"})


class SessionCounter:
    """OData requests being answered at once: what a test or a bench reads to see clients' sessions overlap."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = self.in_flight = self.most_in_flight = 0

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
                self.requests += 1

    def counts(self, *, reset: bool = False) -> dict[str, int]:
        with self._lock:
            counts = {"requests": self.requests, "in_flight": self.in_flight, "most_in_flight": self.most_in_flight}
            if reset:
                self.requests, self.most_in_flight = 0, self.in_flight
        return counts


class OneCServer(SandboxServer):
    """The 1C stand-in; ``odata_url`` is the service root clients are given."""

    def __init__(self, address: tuple[str, int], *, db_path: Path, users: Mapping[str, str], base: str,
                 exchange_dir: Path | None, exchange_poll_seconds: float | None,
                 max_query_string: int | None = IIS_MAX_QUERY_STRING, max_request_line: int | None = HTTP_SYS_MAX_URL,
                 login_page: bool = False, honour_if_match: bool = True, bank_statement: Path | None = None,
                 node_codes: tuple[str, ...] = DEFAULT_NODES, latency_seconds: float = 0.0):
        if latency_seconds < 0:
            raise ValueError(f"latency_seconds must not be negative, not {latency_seconds}")
        store = Store(Path(db_path))
        try:
            infobase = Infobase(store, node_codes=node_codes, honour_if_match=honour_if_match)
            super().__init__(address, OneCHandler, state=infobase)
        except (OSError, sqlite3.Error):
            store.close()
            raise
        self.store, self.infobase = store, infobase
        self.users = dict(users)
        self.max_query_string, self.max_request_line = max_query_string, max_request_line
        self.login_page = login_page
        self.latency_seconds = float(latency_seconds)
        self.sessions = SessionCounter()
        self.odata_path = ("/" + base.strip("/") if base.strip("/") else "") + ODATA_PATH
        self.odata = ODataService(infobase)
        self.exchange = FileExchange(Path(exchange_dir), infobase) if exchange_dir else None
        self.bank = BankStatementImport(Path(bank_statement), infobase) if bank_statement else None
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
        if (self.exchange is not None or self.bank is not None) and self.exchange_poll_seconds \
                and self._poller is None:
            self._poller = threading.Thread(target=self._poll_exchange, name="OneCExchangePoller", daemon=True)
            self._poller.start()
        return thread

    def _poll_exchange(self) -> None:
        while not self._stop_polling.wait(self.exchange_poll_seconds):
            try:
                if self.exchange is not None:
                    self.exchange.process_folder()
                if self.bank is not None:
                    self.bank.import_pending()
            except (OSError, sqlite3.Error, ODataError) as e:
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
                exchange_poll_seconds: float | None = 5.0, max_query_string: int | None = IIS_MAX_QUERY_STRING,
                max_request_line: int | None = HTTP_SYS_MAX_URL, login_page: bool = False,
                honour_if_match: bool = True, bank_statement: Path | None = None,
                node_codes: tuple[str, ...] = DEFAULT_NODES, latency_seconds: float = 0.0) -> OneCServer:
    """A 1C stand-in bound to ``host:port`` (0 picks a free port), keeping its infobase in ``db_path``.

    ``users`` maps Basic-auth user names to passwords. The service root is
    ``srv.url + base + "/odata/standard.odata/"`` (also ``srv.odata_url``). With ``exchange_dir``, its
    ``in/`` is processed every ``exchange_poll_seconds`` once ``start_in_thread()`` runs (None: only on
    demand, through ``process_exchange_folder()`` or ``POST /_sandbox/onec/exchange/run``).
    ``max_query_string``/``max_request_line``/``login_page``: the web server in front (module docstring).
    ``honour_if_match=False`` makes the base ignore ``If-Match``, as some real bases do (see ``infobase``).
    ``bank_statement``: a statement file whose lines the poller imports as posted bank receipts (``bank``).
    ``node_codes``: the exchange plan's nodes, created on first start.
    ``latency_seconds``: the base's own time per OData request, overlapping between sessions (module docstring).
    """
    return OneCServer((host, port), db_path=db_path, users=users, base=base, exchange_dir=exchange_dir,
                      exchange_poll_seconds=exchange_poll_seconds, max_query_string=max_query_string,
                      max_request_line=max_request_line, login_page=login_page,
                      honour_if_match=honour_if_match, bank_statement=bank_statement, node_codes=node_codes,
                      latency_seconds=latency_seconds)
