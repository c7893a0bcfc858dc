"""A REST e-invoice integrator: send UBL-TR XML with a bearer API key, then poll the status by UUID.

Endpoints (``Authorization: Bearer <api key>``; 401 otherwise)::

    POST /v1/invoices                 body: the UBL-TR Invoice XML, Content-Type application/xml (or text/xml)
        202 {"uuid": "...", "status": 1000, "message": "..."} + Location: /v1/invoices/<uuid>/status
        409 {"uuid": "...", "status": 1163, "message": "..."}   already registered at GİB (any integrator)
        422 {"uuid": "..."|null, "status": 1150, "message": "..."}   schema, number format or reused number
        415 when the body is not declared as XML
    GET  /v1/invoices/<uuid>/status   200 {"uuid": "...", "status": 1000|1300, "message": "..."}
        404 when this integrator never took that UUID for this API key's tenant
    GET  /v1/users                    200 {"users": [{"identifier", "alias", "title", "registered_at"}, ...]}
        GİB's e-Fatura user list (who receives e-Fatura; everyone else gets e-Arşiv)

Protocol errors (auth, routing, media type) are ``{"error": {"code": "...", "message": "..."}}``; answers
about an invoice carry the GİB ``status`` code. A GİB status query moves a queued invoice along, so
clients poll until 1300.
"""
from __future__ import annotations

import hmac
import re
from collections.abc import Mapping

from sandbox.einvoice.gib import STATUS_ALREADY_REGISTERED, Gib, GibRejection
from sandbox.httpbase import Response, SandboxHandler, SandboxServer

INTEGRATOR_NAME = "rest"
XML_MEDIA_TYPES = ("application/xml", "text/xml")
_STATUS_PATH = re.compile(r"^/v1/invoices/(?P<uuid>[0-9A-Fa-f-]{36})/status/?$")


class RestIntegratorState:
    """What the integrator holds: the shared GİB, API keys (key -> tenant) and its own name."""

    def __init__(self, gib: Gib, api_keys: Mapping[str, str], name: str):
        self.gib = gib
        self.api_keys = dict(api_keys)
        self.name = name


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}}, headers)


class RestIntegratorHandler(SandboxHandler):
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits ~40 ms (delayed ACK)
    # for every answer.
    disable_nagle_algorithm = True
    server: SandboxServer

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        state: RestIntegratorState = self.server.state
        tenant = self._tenant(state)
        if tenant is None:
            return _error(401, "unauthorized", "send Authorization: Bearer <api key>",
                          {"WWW-Authenticate": 'Bearer realm="einvoice"'})
        if path.rstrip("/") == "/v1/invoices":
            if method != "POST":
                return _error(405, "method_not_allowed", f"{method} is not allowed on {path}")
            return self._send(state, tenant, body)
        if path.rstrip("/") == "/v1/users":
            if method != "GET":
                return _error(405, "method_not_allowed", f"{method} is not allowed on {path}")
            return Response.json(200, {"users": state.gib.users()})
        match = _STATUS_PATH.match(path)
        if match:
            if method != "GET":
                return _error(405, "method_not_allowed", f"{method} is not allowed on {path}")
            found = state.gib.status(match["uuid"], integrator=state.name, sender=tenant)
            if found is None:
                return _error(404, "not_found", f"no invoice {match['uuid']} sent through this integrator")
            return Response.json(200, {"uuid": found.uuid, "status": found.status, "message": found.message})
        return _error(404, "not_found", f"no endpoint {method} {path}")

    def _tenant(self, state: RestIntegratorState) -> str | None:
        scheme, _, key = self.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        for known, tenant in state.api_keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                return tenant
        return None

    def _send(self, state: RestIntegratorState, tenant: str, body: bytes) -> Response:
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type not in XML_MEDIA_TYPES:
            return _error(415, "unsupported_media_type",
                          f"send the UBL-TR XML as application/xml, not {media_type or 'nothing'}")
        try:
            registered = state.gib.submit(body, integrator=state.name, sender=tenant)
        except GibRejection as e:
            status = 409 if e.code == STATUS_ALREADY_REGISTERED else 422
            return Response.json(status, {"uuid": e.uuid, "status": e.code, "message": e.message})
        return Response.json(202, {"uuid": registered.uuid, "status": registered.status,
                                   "message": registered.message},
                             {"Location": f"/v1/invoices/{registered.uuid}/status"})


def make_server(host: str, port: int, gib: Gib, api_keys: Mapping[str, str] | None = None,
                name: str = INTEGRATOR_NAME) -> SandboxServer:
    """A REST integrator server on ``gib`` (call ``start_in_thread()`` to serve).

    ``api_keys`` maps each bearer key to its tenant; ``name`` tells integrators apart inside GİB, so
    each answers status only for what it sent itself.
    """
    api_keys = api_keys if api_keys is not None else {"sandbox-einvoice-key": "ledgerlink"}
    return SandboxServer((host, port), RestIntegratorHandler, state=RestIntegratorState(gib, api_keys, name))
