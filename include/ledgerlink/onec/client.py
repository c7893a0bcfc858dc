"""A client for 1C's standard OData interface (OData v3, JSON), knowing 1C's own habits (DESIGN §8).

Failures are classified once, here: timeouts, resets, 429 and 5xx are transient; 412 is a conflict
(re-read and retry); a 500 with code -1 is a business refusal and other 4xx are terminal.

What the web server in front of a publication does is classified here too, all terminal (retrying cannot
help): an HTML page where OData was expected (a login form answered with 200) is ``AuthenticationFailed``;
any other answer that is not OData JSON (Atom, because the format was lost on the way) is ``NotODataJSON``;
a URL over the server's limit (IIS: 404.15 for a query string over 2,048 bytes, 414 for the request line) is
``URLTooLong``, and a request whose query string would exceed ``max_query_string`` is refused before it is
sent. Long key lists go through ``list_by_keys``, which splits them into requests under that limit.
"""
from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Iterator
from decimal import Decimal
from urllib.parse import quote, quote_plus, unquote, urlencode, urlsplit

import requests

from ledgerlink.errors import AuthenticationFailed, ConflictError, RemoteRejected, TerminalError, TransientError

log = logging.getLogger(__name__)
SERVICE_PATH = "odata/standard.odata"
CODE_NOT_FOUND = "9"
CODE_KEY_EXISTS = "15"
IIS_MAX_QUERY_STRING = 2048  # IIS request filtering's default maxQueryString; Apache allows about 8,190
CONN_HINT = "onec_default (or the one the DAG names)"


class NotODataJSON(TerminalError):
    """1C (or the web server in front) answered something other than OData JSON although JSON was asked for."""

    def __init__(self, method: str, path: str, status: int, content_type: str, sample: str):
        super().__init__(f"1C answered {method} {path} with HTTP {status} and {content_type or 'no content type'}, "
                         f"not OData JSON: {sample!r}. Check the publication URL (base) of the connection and "
                         f"whatever sits between Ledgerlink and 1C (a proxy or web server rewriting the request).")
        self.status = status
        self.content_type = content_type


class URLTooLong(TerminalError):
    """The URL is over the web server's limit: the same request will be refused again, so it is never retried."""

    def __init__(self, method: str, path: str, query_bytes: int, limit: int | None, status: int | None = None):
        answered = f"the web server answered HTTP {status}" if status else "not sent"
        super().__init__(f"1C request {method} {path} has a {query_bytes}-byte query string"
                         + (f", over the limit of {limit} bytes" if limit else "")
                         + f" ({answered}). Split the request (ODataClient.list_by_keys splits key lists), or "
                           f"raise max_query_string in the connection's extra if the server allows longer URLs.")
        self.query_bytes = query_bytes
        self.limit = limit
        self.status = status


def _readable(url: str) -> str:
    """A URL as a person reads it in a log: percent-decoded (Catalog_Контрагенты, not Catalog_%D0%9A…)."""
    return unquote(url)


def guid_key(entity_set: str, ref_key: str) -> str:
    return f"{quote(entity_set)}(guid'{ref_key}')"


class ODataClient:
    """Talks to one 1C infobase. ``base_url`` is the publication root, e.g. ``http://host/acc``.

    ``sessions``: how many sessions a load may hold open with this base at once (a 1C server serves several;
    each further one is :meth:`open_session`, with a connection pool of its own)."""

    system = "1C"

    def __init__(self, base_url: str, user: str, password: str, *, timeout: float = 30.0,
                 max_query_string: int | None = IIS_MAX_QUERY_STRING, sessions: int = 1):
        if sessions < 1:
            raise ValueError(f"sessions must be at least 1, not {sessions}")
        self.base_url = base_url
        self.service_url = base_url.rstrip("/") + "/" + SERVICE_PATH + "/"
        self.session = requests.Session()
        self.session.auth = (user, password)
        self.session.headers.update({"Accept": "application/json"})
        self.timeout = timeout
        self.max_query_string = max_query_string  # bytes after percent-encoding; None: no limit
        self.organisation_inn: str | None = None  # the organisation documents are issued by (None: the base's only one)
        # How the payments flow reads changes from this base (the hook sets them from the connection's extra).
        self.exchange_node: str | None = None
        self.exchange_plan = "ExchangePlan_Ledgerlink"
        self.lookback_days = 7
        self.sessions = sessions
        self._settings_by_host: dict[tuple[str, str], dict] = {}

    def open_session(self) -> "ODataClient":
        """Another session with the same base, credentials, limits and settings (whatever the hook set on this
        client travels too), with its own ``requests.Session``: one per thread, as a ``requests.Session`` is not
        meant to be shared between threads."""
        other = copy.copy(self)
        other.session = requests.Session()
        other.session.auth = self.session.auth
        other.session.headers.update(self.session.headers)
        other.sessions = 1
        other._settings_by_host = {}
        return other

    def close(self) -> None:
        self.session.close()

    def _environment_settings(self, url: str) -> dict:
        """Proxies, CA bundle and the like from the environment, as ``requests`` merges them, read once per host:
        ``requests`` scans every environment variable on each request (about 1 ms of CPU per request here, as
        much as the rest of a request's client side) and a run's environment does not change."""
        host = urlsplit(url)[:2]
        settings = self._settings_by_host.get(host)
        if settings is None:
            settings = self._settings_by_host[host] = self.session.merge_environment_settings(url, {}, None, None,
                                                                                              None)
        return settings

    # transport ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, params: dict | None = None, payload: dict | None = None,
                headers: dict | None = None, json_format: bool = True) -> requests.Response:
        # JSON is asked for twice: $format survives a proxy that drops Accept, and 1C's default is Atom.
        # (Not for the exchange-plan functions, which answer Atom only: ``json_format=False``.)
        params = {"$format": "json", **(params or {})} if json_format else dict(params or {})
        if "$inlinecount" in params and ("$top" in params or "$skip" in params):
            # 1C ignores $top and $skip when $inlinecount is given (guide §17.4.6.2): a paged loop would never end.
            raise ValueError("$inlinecount cannot be combined with $top/$skip: 1C would ignore the paging")
        body = json.dumps(payload, ensure_ascii=False, default=_json_default).encode("utf-8") if payload is not None else None
        request_headers = {"Accept": "application/json", **({"Content-Type": "application/json; charset=utf-8"}
                                                             if body is not None else {})}
        request_headers.update(headers or {})
        prepared = self.session.prepare_request(requests.Request(
            method, self.service_url + path, params=params, data=body, headers=request_headers))
        query_bytes = len(prepared.url.partition("?")[2])
        if self.max_query_string is not None and query_bytes > self.max_query_string:
            raise URLTooLong(method, path, query_bytes, self.max_query_string)
        settings = self._environment_settings(prepared.url)
        try:
            response = self.session.send(prepared, timeout=self.timeout, **settings)
        except requests.RequestException as e:  # connection refused or reset, timeout, answer cut short
            raise TransientError(f"1C did not answer {method} {_readable(prepared.url)}: {type(e).__name__}: "
                                 f"{_readable(str(e))}") from e
        if response.status_code == 414 or (response.status_code == 404 and _is_html(response)
                                           and "404.15" in response.text):
            raise URLTooLong(method, path, query_bytes, self.max_query_string, response.status_code)
        if response.status_code < 400:
            if _is_html(response):
                # A web-server login form answered with 200 (DESIGN §8): the credentials were not accepted.
                raise AuthenticationFailed(self.system, response.status_code, CONN_HINT,
                                           "an HTML page came back instead of OData (a login form of the web "
                                           "server in front of 1C?)")
            return response
        code, message = _odata_error(response)
        if response.status_code in (401, 403):
            # Wrong or locked credentials, or a user without rights to the publication: every record would be
            # refused the same way, so the run stops here as one error.
            raise AuthenticationFailed(self.system, response.status_code, CONN_HINT, message or response.reason)
        if response.status_code == 412:
            raise ConflictError(f"1C object {path} changed since it was read (If-Match failed): {message}")
        if response.status_code == 429 or (response.status_code >= 500 and code != "-1"):
            retry_after = response.headers.get("Retry-After")
            raise TransientError(f"1C answered HTTP {response.status_code} {response.reason or ''} to {method} "
                                 f"{_readable(prepared.url)}: {message or 'no error message in the answer'}",
                                 retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None)
        raise RemoteRejected(self.system, response.status_code, code, message)

    @staticmethod
    def decode(response: requests.Response) -> dict:
        """The OData JSON body; numbers as Decimal, never float (an Edm.Decimal or Edm.Double of 100 arrives as
        the JSON integer ``100`` and is a Decimal too, so money keeps one type whatever its value)."""
        content_type = response.headers.get("Content-Type", "")
        request = response.request
        method, path = (request.method, request.path_url) if request is not None else ("?", response.url)
        if "json" not in content_type.lower():
            raise NotODataJSON(method, path, response.status_code, content_type, response.text[:200])
        try:
            return json.loads(response.content.decode("utf-8"), parse_float=Decimal, parse_int=Decimal)
        except (UnicodeDecodeError, ValueError) as e:
            raise NotODataJSON(method, path, response.status_code, content_type, response.text[:200]) from e

    # verbs ----------------------------------------------------------------------------------------
    def get(self, entity_set: str, ref_key: str) -> dict | None:
        """One object by key, or None when 1C has no such object."""
        try:
            return self.decode(self.request("GET", guid_key(entity_set, ref_key)))
        except RemoteRejected as e:
            if e.code == CODE_NOT_FOUND or e.status == 404:
                return None
            raise

    def list(self, entity_set: str, *, filter: str | None = None, select: list[str] | None = None,
             orderby: str | None = None, page_size: int = 500) -> Iterator[dict]:
        """All matching objects, paged with $top/$skip (stable order by Ref_Key unless told)."""
        skip = 0
        while True:
            params = {"$top": str(page_size), "$skip": str(skip), "$orderby": orderby or "Ref_Key"}
            if filter:
                params["$filter"] = filter
            if select:
                params["$select"] = ",".join(select)
            page = self.decode(self.request("GET", quote(entity_set), params=params)).get("value", [])
            yield from page
            if len(page) < page_size:
                return
            skip += page_size

    def list_by_keys(self, entity_set: str, keys: Iterable[str], field: str = "Ref_Key", *,
                     select: list[str] | None = None) -> Iterator[dict]:
        """The objects whose ``field`` is one of ``keys``, in as few requests as fit the URL limit.

        Each request carries ``field eq k1 or field eq k2 ...`` with as many keys as keep its query string
        within ``max_query_string`` after percent-encoding (an IIS publication refuses longer ones). Keys are
        guids for ``Ref_Key`` and ``*_Key`` fields, strings otherwise; each key is asked for once.
        """
        literal = _guid_literal if field == "Ref_Key" or field.endswith("_Key") else _string_literal
        terms = [f"{field} eq {literal(key)}" for key in dict.fromkeys(keys)]
        base = {"$format": "json", "$filter": ""}
        if select:
            base["$select"] = ",".join(select)
        for chunk in _chunks(terms, len(urlencode(base)), self.max_query_string, separator=" or "):
            params = {"$filter": " or ".join(chunk)}
            if select:
                params["$select"] = ",".join(select)
            yield from self.decode(self.request("GET", quote(entity_set), params=params)).get("value", [])

    def count(self, entity_set: str, filter: str | None = None) -> int:
        params = {"$filter": filter} if filter else {}
        return int(self.request("GET", quote(entity_set) + "/$count", params=params).text.strip())

    def create(self, entity_set: str, payload: dict) -> dict:
        return self.decode(self.request("POST", quote(entity_set), payload=payload))

    def patch(self, entity_set: str, ref_key: str, changes: dict, *, if_match: str | None = None) -> dict:
        headers = {"If-Match": if_match} if if_match else None
        return self.decode(self.request("PATCH", guid_key(entity_set, ref_key), payload=changes, headers=headers))

    def delete(self, entity_set: str, ref_key: str, *, if_match: str | None = None) -> None:
        headers = {"If-Match": if_match} if if_match else None
        self.request("DELETE", guid_key(entity_set, ref_key), headers=headers)

    def post_document(self, entity_set: str, ref_key: str) -> dict | None:
        """The bound ``Post`` action; the document as posted when 1C answers with it (None when the answer is
        empty: a caller needing its new DataVersion then reads it)."""
        response = self.request("POST", guid_key(entity_set, ref_key) + "/Post",
                                params={"PostingModeOperational": "false"})
        if not response.content.strip() or "json" not in response.headers.get("Content-Type", "").lower():
            return None
        answered = self.decode(response)
        return answered if isinstance(answered, dict) and answered.get("Ref_Key") == ref_key else None

    def unpost_document(self, entity_set: str, ref_key: str) -> None:
        """The bound ``Unpost`` action (``Posted`` cannot be written directly)."""
        self.request("POST", guid_key(entity_set, ref_key) + "/Unpost")
    def exchange_plan_call(self, function: str, node_url: str, message_no: int) -> requests.Response:
        """``SelectChanges`` or ``NotifyChangesReceived`` for the exchange node at ``node_url`` (guide §17.4.13.3):
        a POST naming the node by its canonical URL as an OData string literal. Answers Atom (SelectChanges)."""
        literal = "'" + node_url.replace("'", "''") + "'"
        return self.request("POST", function, params={"DataExchangePoint": literal, "MessageNo": str(message_no)},
                            headers={"Accept": "application/atom+xml"}, json_format=False)

    def node_url(self, exchange_plan: str, ref_key: str) -> str:
        """The canonical URL of an exchange node, as SelectChanges names it."""
        return self.service_url + f"{exchange_plan}(guid'{ref_key}')"



def _is_html(response: requests.Response) -> bool:
    if "html" in response.headers.get("Content-Type", "").lower():
        return True
    start = response.content[:100].lstrip().lower()
    return start.startswith(b"<!doctype html") or start.startswith(b"<html")


def _guid_literal(key: str) -> str:
    return f"guid'{key}'"


def _string_literal(key: str) -> str:
    return "'" + str(key).replace("'", "''") + "'"


def _chunks(terms: list[str], base_bytes: int, limit: int | None, separator: str) -> Iterator[list[str]]:
    """Greedy runs of ``terms`` whose joined text, percent-encoded as requests encodes a parameter value
    (quote_plus), fits beside the rest of the query (``base_bytes``) within ``limit``; one term too long alone
    is a ``URLTooLong``."""
    if limit is None:
        if terms:
            yield terms
        return
    gap = len(quote_plus(separator))
    chunk, used = [], base_bytes
    for term in terms:
        size = len(quote_plus(term))
        if base_bytes + size > limit:
            raise URLTooLong("GET", f"a $filter on {term.split(' ', 1)[0]}", base_bytes + size, limit)
        if chunk and used + gap + size > limit:
            yield chunk
            chunk, used = [], base_bytes
        used += size + (gap if chunk else 0)
        chunk.append(term)
    if chunk:
        yield chunk


def _odata_error(response: requests.Response) -> tuple[str | None, str]:
    try:
        error = response.json().get("odata.error", {})
        message = error.get("message", {})
        return str(error.get("code")) if error.get("code") is not None else None, \
            message.get("value", "") if isinstance(message, dict) else str(message)
    except (ValueError, AttributeError):
        return None, response.text[:300]


def _json_default(value):
    if isinstance(value, Decimal):
        # 1C takes Edm.Decimal as a JSON number; a string of the exact digits keeps it exact on our side.
        return str(value)
    raise TypeError(f"cannot send {type(value).__name__} to 1C")
