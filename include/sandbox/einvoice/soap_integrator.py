"""A SOAP 1.1 e-invoice integrator: log in for a session id, send a base64 ZIP of the UBL, ask the status.

Deliberately unlike the REST integrator. One endpoint, ``POST /EFaturaService`` with ``Content-Type: text/xml``
and a ``SOAPAction`` header naming the operation (``"Login"``, or any URI ending in ``/Login`` or ``#Login``);
``GET /EFaturaService?wsdl`` returns the WSDL. Operations live in namespace ``SERVICE_NS``, document/literal,
their parameters unqualified::

    Login(username, password)                       -> LoginResponse/sessionId
    SendInvoice(sessionId, fileName, binaryData, hash)
        binaryData: base64 of a ZIP holding exactly one file, the UBL-TR XML; hash: hex MD5 of the ZIP bytes
                                                    -> SendInvoiceResponse/Result/{Status, Uuid, Message}
    GetInvoiceStatus(sessionId, uuid)               -> GetInvoiceStatusResponse/Result/{Status, Uuid, Message}
    Logout(sessionId)                               -> LogoutResponse/Result = true

Failures are SOAP faults (HTTP 500) whose ``faultstring`` is a code, repeated with a message under
``detail/ServiceError/{Code, Message, Uuid}``: ``1163`` (already registered at GİB), ``1150`` (schema, number),
``1110`` (not a ZIP), ``1132`` (the ZIP must hold one file), ``HASH_MISMATCH``, ``SESSION_EXPIRED`` (unknown,
logged out or older than ``session_minutes``), ``AUTHENTICATION_FAILED``, ``INVOICE_NOT_FOUND``,
``INVALID_REQUEST``. Sessions live in memory: a restart logs everyone out, as with real integrators;
invoices live in the shared GİB database.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import secrets
import threading
import time
import zipfile
from collections.abc import Mapping
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from sandbox.einvoice.gib import Gib, GibRejection
from sandbox.httpbase import Response, SandboxHandler, SandboxServer

INTEGRATOR_NAME = "soap"
SERVICE_PATH = "/EFaturaService"
SERVICE_NS = "http://efatura.sandbox.local/ws"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OPERATIONS = ("Login", "SendInvoice", "GetInvoiceStatus", "Logout")
MAX_ZIP_BYTES = 10 * 1024 * 1024
MAX_XML_BYTES = 20 * 1024 * 1024
MAX_COMPRESSION_RATIO = 100  # a UBL invoice compresses ~10x; far more means a ZIP bomb

GIB_NOT_A_ZIP = "1110"
GIB_ZIP_NOT_ONE_FILE = "1132"


class SoapFault(Exception):
    """A fault to answer: ``code`` goes into ``faultstring`` and ``detail``."""

    def __init__(self, code: str, message: str, uuid: str | None = None, side: str = "Client"):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.uuid = uuid
        self.side = side


class SessionTable:
    """Session ids handed out by Login; each lasts ``ttl_seconds`` from login. Thread-safe."""

    def __init__(self, ttl_seconds: float):
        self.ttl_seconds = ttl_seconds
        self._sessions: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def open(self, user: str) -> str:
        session_id = secrets.token_hex(16)
        with self._lock:
            self._sessions[session_id] = (user, time.monotonic() + self.ttl_seconds)
        return session_id

    def user(self, session_id: str) -> str:
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is not None and entry[1] <= time.monotonic():
                del self._sessions[session_id]
                entry = None
        if entry is None:
            raise SoapFault("SESSION_EXPIRED", "the session is unknown or has expired; call Login again")
        return entry[0]

    def close(self, session_id: str) -> None:
        with self._lock:
            if self._sessions.pop(session_id, None) is None:
                raise SoapFault("SESSION_EXPIRED", "the session is unknown or has expired")


class SoapIntegratorState:
    def __init__(self, gib: Gib, users: Mapping[str, str], session_minutes: float, name: str):
        self.gib = gib
        self.users = dict(users)
        self.sessions = SessionTable(session_minutes * 60)
        self.name = name


def _envelope(body_xml: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP_ENV_NS}" xmlns:ef="{SERVICE_NS}">'
            f"<soap:Body>{body_xml}</soap:Body></soap:Envelope>").encode("utf-8")


def _xml_response(status: int, body_xml: str) -> Response:
    return Response(status, _envelope(body_xml), {"Content-Type": "text/xml; charset=utf-8"})


def _fault_response(fault: SoapFault) -> Response:
    uuid = f"<Uuid>{escape(fault.uuid)}</Uuid>" if fault.uuid else ""
    return _xml_response(500, (
        f"<soap:Fault><faultcode>soap:{fault.side}</faultcode><faultstring>{escape(fault.code)}</faultstring>"
        f"<detail><ef:ServiceError><Code>{escape(fault.code)}</Code><Message>{escape(fault.message)}</Message>"
        f"{uuid}</ef:ServiceError></detail></soap:Fault>"))


def _result(operation: str, status: int | str, uuid: str, message: str) -> Response:
    return _xml_response(200, (
        f"<ef:{operation}Response><Result><Status>{status}</Status><Uuid>{escape(uuid)}</Uuid>"
        f"<Message>{escape(message)}</Message></Result></ef:{operation}Response>"))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _params(operation: Element) -> dict[str, str]:
    return {_local(child.tag): (child.text or "").strip() for child in operation}


def _required(params: dict[str, str], *names: str) -> list[str]:
    missing = [n for n in names if not params.get(n)]
    if missing:
        raise SoapFault("INVALID_REQUEST", f"missing parameter(s): {', '.join(missing)}")
    return [params[n] for n in names]


def unzip_single_xml(data: bytes) -> bytes:
    """The one file inside a ZIP, with size and ratio capped before it is read."""
    if len(data) > MAX_ZIP_BYTES:
        raise SoapFault(GIB_NOT_A_ZIP, f"ZIP larger than {MAX_ZIP_BYTES} bytes")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise SoapFault(GIB_NOT_A_ZIP, "ZIP DEĞİL: binaryData is not a ZIP archive") from e
    with archive:
        files = [info for info in archive.infolist() if not info.is_dir()]
        if len(files) != 1:
            raise SoapFault(GIB_ZIP_NOT_ONE_FILE, f"ZIP BİR DOSYA İÇERMELİ: found {len(files)} files")
        info = files[0]
        if info.file_size > MAX_XML_BYTES or info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise SoapFault(GIB_NOT_A_ZIP, f"{info.filename}: uncompressed size {info.file_size} is over the cap")
        try:
            return archive.read(info)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as e:
            raise SoapFault(GIB_NOT_A_ZIP, f"cannot read {info.filename} from the ZIP: {e}") from e


class SoapIntegratorHandler(SandboxHandler):
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits ~40 ms (delayed ACK)
    # for every answer.
    disable_nagle_algorithm = True
    server: SandboxServer

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        if path != SERVICE_PATH:
            return Response(404, b"not found", {"Content-Type": "text/plain; charset=utf-8"})
        if method == "GET" and "wsdl" in {k.lower() for k in query}:
            return Response(200, wsdl(self.server.url + SERVICE_PATH).encode("utf-8"),
                            {"Content-Type": "text/xml; charset=utf-8"})
        if method != "POST":
            return Response(405, b"POST a SOAP envelope, or GET ?wsdl",
                            {"Content-Type": "text/plain; charset=utf-8", "Allow": "GET, POST"})
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "text/xml":
            return Response(415, b"SOAP 1.1 requests are text/xml", {"Content-Type": "text/plain; charset=utf-8"})
        try:
            operation = self._operation(body)
            return self._call(self.server.state, operation)
        except SoapFault as fault:
            return _fault_response(fault)

    def _operation(self, body: bytes) -> Element:
        try:
            envelope = fromstring(body)
        except (ParseError, DefusedXmlException) as e:
            raise SoapFault("INVALID_REQUEST", f"the request is not well-formed XML: {e}") from e
        soap_body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
        if envelope.tag != f"{{{SOAP_ENV_NS}}}Envelope" or soap_body is None or len(soap_body) != 1:
            raise SoapFault("INVALID_REQUEST", "expected a SOAP 1.1 Envelope with one operation in its Body")
        operation = soap_body[0]
        name = _local(operation.tag)
        if operation.tag != f"{{{SERVICE_NS}}}{name}" or name not in OPERATIONS:
            raise SoapFault("INVALID_REQUEST", f"unknown operation {operation.tag}")
        action = self.headers.get("SOAPAction")
        if action is None:
            raise SoapFault("INVALID_REQUEST", "the SOAPAction header is missing")
        action = action.strip().strip('"')
        for separator in ("/", "#", ":"):
            action = action.rsplit(separator, 1)[-1]
        if action != name:
            raise SoapFault("INVALID_REQUEST", f"SOAPAction {action!r} does not match the operation {name!r}")
        return operation

    def _call(self, state: SoapIntegratorState, operation: Element) -> Response:
        name = _local(operation.tag)
        params = _params(operation)
        if name == "Login":
            username, password = _required(params, "username", "password")
            known = state.users.get(username)
            if known is None or not hmac.compare_digest(known.encode(), password.encode()):
                raise SoapFault("AUTHENTICATION_FAILED", "wrong username or password")
            session_id = state.sessions.open(username)
            return _xml_response(200, f"<ef:LoginResponse><sessionId>{session_id}</sessionId></ef:LoginResponse>")
        (session_id,) = _required(params, "sessionId")
        if name == "Logout":
            state.sessions.close(session_id)
            return _xml_response(200, "<ef:LogoutResponse><Result>true</Result></ef:LogoutResponse>")
        user = state.sessions.user(session_id)
        if name == "GetInvoiceStatus":
            (invoice_uuid,) = _required(params, "uuid")
            found = state.gib.status(invoice_uuid, integrator=state.name, sender=user)
            if found is None:
                raise SoapFault("INVOICE_NOT_FOUND", "no invoice with that UUID was sent through this integrator",
                                invoice_uuid)
            return _result(name, found.status, found.uuid, found.message)
        return self._send_invoice(state, user, params)

    @staticmethod
    def _send_invoice(state: SoapIntegratorState, user: str, params: dict[str, str]) -> Response:
        _file_name, binary_data, md5_hex = _required(params, "fileName", "binaryData", "hash")
        try:
            data = base64.b64decode("".join(binary_data.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise SoapFault("INVALID_REQUEST", f"binaryData is not base64: {e}") from e
        if not hmac.compare_digest(hashlib.md5(data).hexdigest(), md5_hex.lower()):
            raise SoapFault("HASH_MISMATCH", "hash is not the MD5 of the decoded binaryData")
        ubl = unzip_single_xml(data)
        try:
            registered = state.gib.submit(ubl, integrator=state.name, sender=user)
        except GibRejection as e:
            raise SoapFault(str(e.code), e.message, e.uuid) from e
        return _result("SendInvoice", registered.status, registered.uuid, registered.message)


def make_server(host: str, port: int, gib: Gib, users: Mapping[str, str] | None = None,
                session_minutes: float = 20.0, name: str = INTEGRATOR_NAME) -> SandboxServer:
    """A SOAP integrator server on ``gib`` (call ``start_in_thread()`` to serve).

    ``users`` maps user names to passwords; sessions expire ``session_minutes`` after login.
    """
    users = users if users is not None else {"ledgerlink": "sandbox-soap-password"}
    return SandboxServer((host, port), SoapIntegratorHandler,
                         state=SoapIntegratorState(gib, users, session_minutes, name))


def wsdl(location: str) -> str:
    """The service description, so SOAP toolkits (zeep, SoapUI) can call the stand-in."""
    def element(op: str, fields: list[tuple[str, str]]) -> str:
        inner = "".join(f'<xs:element name="{n}" type="{t}"/>' for n, t in fields)
        return (f'<xs:element name="{op}"><xs:complexType><xs:sequence>{inner}</xs:sequence>'
                "</xs:complexType></xs:element>")

    requests = {
        "Login": [("username", "xs:string"), ("password", "xs:string")],
        "SendInvoice": [("sessionId", "xs:string"), ("fileName", "xs:string"), ("binaryData", "xs:base64Binary"),
                        ("hash", "xs:string")],
        "GetInvoiceStatus": [("sessionId", "xs:string"), ("uuid", "xs:string")],
        "Logout": [("sessionId", "xs:string")],
    }
    responses = {
        "Login": [("sessionId", "xs:string")],
        "SendInvoice": [("Result", "tns:Result")],
        "GetInvoiceStatus": [("Result", "tns:Result")],
        "Logout": [("Result", "xs:boolean")],
    }
    elements = "".join(element(op, fields) for op, fields in requests.items())
    elements += "".join(element(f"{op}Response", fields) for op, fields in responses.items())
    messages = "".join(
        f'<wsdl:message name="{op}{suffix}"><wsdl:part name="parameters" element="tns:{op}{suffix}"/></wsdl:message>'
        for op in OPERATIONS for suffix in ("", "Response"))
    port_ops = "".join(
        f'<wsdl:operation name="{op}"><wsdl:input message="tns:{op}"/><wsdl:output message="tns:{op}Response"/>'
        f'<wsdl:fault name="fault" message="tns:ServiceFault"/></wsdl:operation>' for op in OPERATIONS)
    binding_ops = "".join(
        f'<wsdl:operation name="{op}"><soap:operation soapAction="{op}" style="document"/>'
        f'<wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>'
        f'<wsdl:fault name="fault"><soap:fault name="fault" use="literal"/></wsdl:fault></wsdl:operation>'
        for op in OPERATIONS)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:tns="{SERVICE_NS}" targetNamespace="{SERVICE_NS}">
<wsdl:types><xs:schema targetNamespace="{SERVICE_NS}" elementFormDefault="unqualified">
<xs:complexType name="Result"><xs:sequence><xs:element name="Status" type="xs:string"/>
<xs:element name="Uuid" type="xs:string"/><xs:element name="Message" type="xs:string"/></xs:sequence></xs:complexType>
{element("ServiceError", [("Code", "xs:string"), ("Message", "xs:string"), ("Uuid", "xs:string")]).replace(
        '<xs:element name="Uuid" type="xs:string"/>', '<xs:element name="Uuid" type="xs:string" minOccurs="0"/>')}
{elements}
</xs:schema></wsdl:types>
{messages}<wsdl:message name="ServiceFault"><wsdl:part name="fault" element="tns:ServiceError"/></wsdl:message>
<wsdl:portType name="EFaturaPortType">{port_ops}</wsdl:portType>
<wsdl:binding name="EFaturaBinding" type="tns:EFaturaPortType">
<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>{binding_ops}</wsdl:binding>
<wsdl:service name="EFaturaService"><wsdl:port name="EFaturaPort" binding="tns:EFaturaBinding">
<soap:address location="{escape(location)}"/></wsdl:port></wsdl:service>
</wsdl:definitions>
"""
