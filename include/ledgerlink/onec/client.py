"""A client for 1C's standard OData interface (OData v3, JSON), knowing 1C's own habits (DESIGN §8).

Failures are classified once, here: timeouts, resets, 429 and 5xx are transient; 412 is a conflict
(re-read and retry); a 500 with code -1 is a business refusal and other 4xx are terminal.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import quote

import requests

from ledgerlink.errors import AuthenticationFailed, ConflictError, RemoteRejected, TransientError

log = logging.getLogger(__name__)
SERVICE_PATH = "odata/standard.odata"
CODE_NOT_FOUND = "9"
CODE_KEY_EXISTS = "15"


def guid_key(entity_set: str, ref_key: str) -> str:
    return f"{quote(entity_set)}(guid'{ref_key}')"


class ODataClient:
    """Talks to one 1C infobase. ``base_url`` is the publication root, e.g. ``http://host/acc``."""

    system = "1C"

    def __init__(self, base_url: str, user: str, password: str, *, timeout: float = 30.0):
        self.service_url = base_url.rstrip("/") + "/" + SERVICE_PATH + "/"
        self.session = requests.Session()
        self.session.auth = (user, password)
        self.session.headers.update({"Accept": "application/json"})
        self.timeout = timeout

    def close(self) -> None:
        self.session.close()

    # transport ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, params: dict | None = None, payload: dict | None = None,
                headers: dict | None = None) -> requests.Response:
        params = {"$format": "json", **(params or {})}
        body = json.dumps(payload, ensure_ascii=False, default=_json_default).encode("utf-8") if payload is not None else None
        request_headers = {"Content-Type": "application/json; charset=utf-8"} if body is not None else {}
        request_headers.update(headers or {})
        try:
            response = self.session.request(method, self.service_url + path, params=params, data=body,
                                            headers=request_headers, timeout=self.timeout)
        except requests.RequestException as e:  # connection refused or reset, timeout, answer cut short
            raise TransientError(f"1C did not answer {method} {path}: {type(e).__name__}: {e}") from e
        if response.status_code < 400:
            return response
        code, message = _odata_error(response)
        if response.status_code in (401, 403):
            # Wrong or locked credentials, or a user without rights to the publication: every record would be
            # refused the same way, so the run stops here as one error.
            raise AuthenticationFailed(self.system, response.status_code, "onec_default (or the one the DAG names)",
                                       message or response.reason)
        if response.status_code == 412:
            raise ConflictError(f"1C object {path} changed since it was read (If-Match failed): {message}")
        if response.status_code == 429 or (response.status_code >= 500 and code != "-1"):
            retry_after = response.headers.get("Retry-After")
            raise TransientError(f"1C answered HTTP {response.status_code} to {method} {path}: {message}",
                                 retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None)
        raise RemoteRejected(self.system, response.status_code, code, message)

    @staticmethod
    def decode(response: requests.Response) -> dict:
        # Edm.Decimal arrives as a JSON number: read it as Decimal, never as float.
        return json.loads(response.content.decode("utf-8"), parse_float=Decimal)

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

    def post_document(self, entity_set: str, ref_key: str) -> None:
        self.request("POST", guid_key(entity_set, ref_key) + "/Post", params={"PostingModeOperational": "false"})


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
