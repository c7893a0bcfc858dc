"""Clients for the integrators' APIs, which differ on purpose: REST with a bearer key (send the XML, poll the
status by UUID) and SOAP with a session and a base64 ZIP. Both answer in one vocabulary (:class:`Answer`), and
every failure is classified here, once:

* an answer about the invoice: queued / accepted (GİB 1000 / 1300), duplicate (1163: GİB holds this UUID),
  rejected (the integrator's or GİB's refusal, with both codes), not received (the integrator never took it);
* :class:`RateLimited` (429): definitely not taken; retried after ``Retry-After``;
* :class:`Unanswered`: no answer about the invoice (a timeout, a dropped connection, a 5xx). ``reached`` tells
  whether the request may have reached the integrator: only a connection never made says it did not;
* :class:`~ledgerlink.errors.AuthenticationFailed`: refused credentials, one error for the run.

Credentials travel only in headers and the SOAP login; no message here ever contains them.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import zipfile
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from xml.sax.saxutils import escape

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from ledgerlink.errors import AuthenticationFailed, TransientError

log = logging.getLogger(__name__)
GIB_QUEUED, GIB_ALREADY_REGISTERED, GIB_DONE = 1000, 1163, 1300
QUEUED, ACCEPTED, DUPLICATE, REJECTED, NOT_RECEIVED = "queued", "accepted", "duplicate", "rejected", "not_received"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_SERVICE = "http://efatura.sandbox.local/ws"


@dataclass(frozen=True)
class Answer:
    """What an integrator said about one invoice."""

    integrator: str
    outcome: str  # queued / accepted / duplicate / rejected / not_received
    gib_status: int | None = None
    code: str | None = None  # the integrator's own code (REST: the HTTP status; SOAP: the fault code)
    http_status: int | None = None
    message: str = ""


class Unanswered(TransientError):
    """No answer about the invoice. ``reached``: whether the request may have got to the integrator."""

    def __init__(self, integrator: str, what: str, problem: str, *, reached: bool, http_status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(f"{integrator} gave no answer to {what}: {problem}", retry_after=retry_after)
        self.integrator = integrator
        self.reached = reached
        self.http_status = http_status


class RateLimited(Unanswered):
    """429: the integrator refused the call before looking at it; try again after ``retry_after`` seconds."""

    def __init__(self, integrator: str, what: str, retry_after: float | None):
        super().__init__(integrator, what, f"rate limited (429), Retry-After {retry_after}", reached=False,
                         http_status=429, retry_after=retry_after)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def _request(session: requests.Session, integrator: str, what: str, method: str, url: str, *,
             timeout: tuple[float, float], **kwargs) -> requests.Response:
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.ConnectTimeout as e:
        raise Unanswered(integrator, what, "could not connect (timeout)", reached=False) from e
    except requests.ConnectionError as e:
        # Refused or unreachable: the request never left. Anything else (reset, dropped answer) may have landed.
        never_sent = "NewConnectionError" in repr(e) or "Failed to establish" in str(e)
        raise Unanswered(integrator, what, type(e).__name__ + (": connection refused" if never_sent
                                                                else ": connection lost before the answer"),
                         reached=not never_sent) from e
    except requests.Timeout as e:
        raise Unanswered(integrator, what, "no answer within the timeout", reached=True) from e
    except requests.RequestException as e:
        raise Unanswered(integrator, what, type(e).__name__, reached=True) from e
    if response.status_code == 429:
        raise RateLimited(integrator, what, retry_after_seconds(response.headers.get("Retry-After")))
    return response


class RestIntegrator:
    """``POST /v1/invoices`` (XML) and ``GET /v1/invoices/<uuid>/status`` with ``Authorization: Bearer``."""

    protocol = "rest"

    def __init__(self, name: str, base_url: str, api_key: str, *, timeout: float = 30.0,
                 connect_timeout: float = 3.0):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = (connect_timeout, timeout)

    def __repr__(self) -> str:  # never the key
        return f"RestIntegrator({self.name!r}, {self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def _json(self, response: requests.Response) -> dict:
        try:
            return response.json()
        except ValueError:
            return {}

    def _check_auth(self, response: requests.Response) -> None:
        if response.status_code in (401, 403):
            message = self._json(response).get("error", {}).get("message", response.reason)
            raise AuthenticationFailed(self.name, response.status_code, "(its password is the API key)", message)

    def send(self, ettn: str, number: str, document: bytes) -> Answer:
        what = f"sending {number} ({ettn})"
        response = _request(self.session, self.name, what, "POST", f"{self.base_url}/v1/invoices",
                            timeout=self.timeout, data=document,
                            headers={"Content-Type": "application/xml; charset=utf-8"})
        self._check_auth(response)
        body = self._json(response)
        if response.status_code >= 500 or "status" not in body:
            raise Unanswered(self.name, what, f"HTTP {response.status_code}", reached=True,
                             http_status=response.status_code)
        status, message = int(body["status"]), str(body.get("message", ""))
        if response.status_code == 409 or status == GIB_ALREADY_REGISTERED:
            return Answer(self.name, DUPLICATE, status, str(response.status_code), response.status_code, message)
        if response.status_code >= 400:
            return Answer(self.name, REJECTED, status, str(response.status_code), response.status_code, message)
        return Answer(self.name, ACCEPTED if status == GIB_DONE else QUEUED, status, str(response.status_code),
                      response.status_code, message)

    def status(self, ettn: str) -> Answer:
        what = f"the status of {ettn}"
        response = _request(self.session, self.name, what, "GET", f"{self.base_url}/v1/invoices/{ettn}/status",
                            timeout=self.timeout)
        self._check_auth(response)
        body = self._json(response)
        if response.status_code == 404 and "error" in body:
            return Answer(self.name, NOT_RECEIVED, None, "404", 404, body["error"].get("message", ""))
        if response.status_code != 200 or "status" not in body:
            raise Unanswered(self.name, what, f"HTTP {response.status_code}", reached=True,
                             http_status=response.status_code)
        status = int(body["status"])
        return Answer(self.name, ACCEPTED if status == GIB_DONE else QUEUED, status, "200", 200,
                      str(body.get("message", "")))

    def registered_users(self) -> list[dict]:
        """GİB's e-Fatura user list as this integrator serves it."""
        response = _request(self.session, self.name, "the e-Fatura user list", "GET", f"{self.base_url}/v1/users",
                            timeout=self.timeout)
        self._check_auth(response)
        if response.status_code != 200:
            raise Unanswered(self.name, "the e-Fatura user list", f"HTTP {response.status_code}", reached=True,
                             http_status=response.status_code)
        return list(self._json(response).get("users", []))


class SoapFaultAnswer(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SoapIntegrator:
    """``Login`` → ``SendInvoice`` (base64 ZIP of the XML, MD5) / ``GetInvoiceStatus``; a session expiring is
    met by logging in again once."""

    protocol = "soap"
    path = "/EFaturaService"

    def __init__(self, name: str, base_url: str, username: str, password: str, *, timeout: float = 30.0,
                 connect_timeout: float = 3.0):
        self.name = name
        self.url = base_url.rstrip("/") + self.path
        self.session = requests.Session()
        self.timeout = (connect_timeout, timeout)
        self._username, self._password = username, password
        self._session_id: str | None = None

    def __repr__(self) -> str:  # never the password
        return f"SoapIntegrator({self.name!r}, {self.url!r})"

    def close(self) -> None:
        self.session.close()

    def _call(self, operation: str, params: dict[str, str], what: str):
        body = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in params.items())
        envelope = (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" '
                    f'xmlns:ef="{SOAP_SERVICE}"><soap:Body><ef:{operation}>{body}</ef:{operation}></soap:Body>'
                    f"</soap:Envelope>").encode("utf-8")
        response = _request(self.session, self.name, what, "POST", self.url, timeout=self.timeout, data=envelope,
                            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{operation}"'})
        try:
            root = fromstring(response.content)
        except (ParseError, DefusedXmlException):
            raise Unanswered(self.name, what, f"HTTP {response.status_code}, not a SOAP answer", reached=True,
                             http_status=response.status_code) from None
        fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
        if fault is not None:
            error = fault.find("detail/{%s}ServiceError" % SOAP_SERVICE)
            code = (error.findtext("Code") if error is not None else None) or fault.findtext("faultstring") or ""
            message = (error.findtext("Message") if error is not None else None) or ""
            raise SoapFaultAnswer(code.strip(), message.strip())
        if response.status_code != 200:
            raise Unanswered(self.name, what, f"HTTP {response.status_code}", reached=True,
                             http_status=response.status_code)
        return root.find(f"{{{SOAP_ENV}}}Body")[0]

    def _login(self) -> str:
        try:
            answer = self._call("Login", {"username": self._username, "password": self._password}, "logging in")
        except SoapFaultAnswer as fault:
            if fault.code == "AUTHENTICATION_FAILED":
                raise AuthenticationFailed(self.name, 500, "(login and password)", fault.message) from None
            raise Unanswered(self.name, "logging in", f"fault {fault.code}", reached=True) from None
        self._session_id = (answer.findtext("sessionId") or "").strip()
        return self._session_id

    def _with_session(self, operation: str, params: dict[str, str], what: str):
        for attempt in (1, 2):
            session_id = self._session_id or self._login()
            try:
                return self._call(operation, {"sessionId": session_id, **params}, what)
            except SoapFaultAnswer as fault:
                if fault.code == "SESSION_EXPIRED" and attempt == 1:
                    self._session_id = None  # the integrator restarted or the session timed out: log in again
                    continue
                raise
        raise AssertionError("unreachable")

    def _result(self, answer) -> tuple[int, str]:
        result = answer.find("Result")
        return int((result.findtext("Status") or "0").strip()), (result.findtext("Message") or "").strip()

    def send(self, ettn: str, number: str, document: bytes) -> Answer:
        what = f"sending {number} ({ettn})"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{ettn}.xml", document)
        data = buffer.getvalue()
        params = {"fileName": f"{ettn}.zip", "binaryData": base64.b64encode(data).decode("ascii"),
                  "hash": hashlib.md5(data).hexdigest()}
        try:
            status, message = self._result(self._with_session("SendInvoice", params, what))
        except SoapFaultAnswer as fault:
            if fault.code == str(GIB_ALREADY_REGISTERED):
                return Answer(self.name, DUPLICATE, GIB_ALREADY_REGISTERED, fault.code, 500, fault.message)
            gib = int(fault.code) if fault.code.isdigit() else None
            return Answer(self.name, REJECTED, gib, fault.code, 500, fault.message)
        return Answer(self.name, ACCEPTED if status == GIB_DONE else QUEUED, status, "OK", 200, message)

    def status(self, ettn: str) -> Answer:
        what = f"the status of {ettn}"
        try:
            status, message = self._result(self._with_session("GetInvoiceStatus", {"uuid": ettn}, what))
        except SoapFaultAnswer as fault:
            if fault.code == "INVOICE_NOT_FOUND":
                return Answer(self.name, NOT_RECEIVED, None, fault.code, 500, fault.message)
            raise Unanswered(self.name, what, f"fault {fault.code}: {fault.message}", reached=True) from None
        return Answer(self.name, ACCEPTED if status == GIB_DONE else QUEUED, status, "OK", 200, message)

