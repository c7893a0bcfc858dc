"""The e-invoice stand-ins over real HTTP: REST and SOAP integrators sharing one simulated GİB."""
from __future__ import annotations

import base64
import hashlib
import io
import time
import uuid
import zipfile
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
import pytest
import requests

from sandbox.einvoice import rest_integrator, soap_integrator
from sandbox.einvoice.gib import Gib
from tests.support.sandbox_http import serving

API_KEY = "rest-key"
SOAP_USER, SOAP_PASSWORD = "ledgerlink", "soap-secret"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = soap_integrator.SERVICE_NS


def ubl(invoice_uuid: str, number: str, *, profile: str = "TEMELFATURA", customization: str = "TR1.2",
        supplier_vkn: str = "1234567890") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
 xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
 xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:UBLVersionID>2.1</cbc:UBLVersionID>
  <cbc:CustomizationID>{customization}</cbc:CustomizationID>
  <cbc:ProfileID>{profile}</cbc:ProfileID>
  <cbc:ID>{number}</cbc:ID>
  <cbc:CopyIndicator>false</cbc:CopyIndicator>
  <cbc:UUID>{invoice_uuid}</cbc:UUID>
  <cbc:IssueDate>2026-01-31</cbc:IssueDate>
  <cbc:InvoiceTypeCode>SATIS</cbc:InvoiceTypeCode>
  <cbc:DocumentCurrencyCode>TRY</cbc:DocumentCurrencyCode>
  <cac:AccountingSupplierParty><cac:Party><cac:PartyIdentification>
    <cbc:ID schemeID="VKN">{supplier_vkn}</cbc:ID>
  </cac:PartyIdentification></cac:Party></cac:AccountingSupplierParty>
</Invoice>""".encode()


@pytest.fixture
def gib(tmp_path):
    return Gib(tmp_path / "gib.sqlite")


@pytest.fixture
def rest(gib):
    with serving(rest_integrator.make_server("127.0.0.1", 0, gib, api_keys={API_KEY: "ledgerlink"})) as server:
        yield server


@pytest.fixture
def soap(gib):
    with serving(soap_integrator.make_server("127.0.0.1", 0, gib, users={SOAP_USER: SOAP_PASSWORD})) as server:
        yield server


def rest_send(server, document: bytes) -> requests.Response:
    return requests.post(server.url + "/v1/invoices", data=document, timeout=5,
                         headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/xml"})


def rest_status(server, invoice_uuid: str) -> requests.Response:
    return requests.get(f"{server.url}/v1/invoices/{invoice_uuid}/status", timeout=5,
                        headers={"Authorization": f"Bearer {API_KEY}"})


def soap_call(server, operation: str, **params: str) -> tuple[int, object]:
    """Post one operation; returns the HTTP status and the element under soap:Body."""
    fields = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in params.items())
    envelope = (f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:ef="{NS}"><soapenv:Body>'
                f"<ef:{operation}>{fields}</ef:{operation}></soapenv:Body></soapenv:Envelope>")
    response = requests.post(server.url + "/EFaturaService", data=envelope.encode(), timeout=5,
                             headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{operation}"'})
    body = SafeET.fromstring(response.content).find(f"{{{SOAP_ENV}}}Body")
    return response.status_code, body[0]


def zipped(document: bytes, name: str = "invoice.xml") -> tuple[str, str]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, document)
    data = buffer.getvalue()
    return base64.b64encode(data).decode(), hashlib.md5(data).hexdigest()


def soap_login(server) -> str:
    status, response = soap_call(server, "Login", username=SOAP_USER, password=SOAP_PASSWORD)
    assert status == 200
    return response.findtext("sessionId")


def fault_code(element) -> str:
    assert element.tag == f"{{{SOAP_ENV}}}Fault"
    return element.findtext("detail/{%s}ServiceError/Code" % NS)


def test_rest_send_then_poll_until_done(rest):
    invoice_uuid = str(uuid.uuid4())
    sent = rest_send(rest, ubl(invoice_uuid, "LLK2026000000001"))
    assert sent.status_code == 202
    assert sent.json() == {"uuid": invoice_uuid, "status": 1000, "message": "ZARF KUYRUĞA EKLENDİ"}
    statuses = [rest_status(rest, invoice_uuid).json()["status"] for _ in range(2)]
    assert statuses == [1300, 1300]
    assert rest_status(rest, str(uuid.uuid4())).status_code == 404
    unauthorised = requests.get(f"{rest.url}/v1/invoices/{invoice_uuid}/status", timeout=5)
    assert unauthorised.status_code == 401


def test_gib_can_hold_invoices_queued_for_several_polls(tmp_path):
    gib = Gib(tmp_path / "slow.sqlite", queued_polls=2)
    invoice_uuid = str(uuid.uuid4())
    gib.submit(ubl(invoice_uuid, "LLK2026000000001"), integrator="rest", sender="t")
    assert [gib.status(invoice_uuid).status for _ in range(4)] == [1000, 1000, 1300, 1300]


def test_soap_login_send_zip_and_status(soap):
    session_id = soap_login(soap)
    invoice_uuid = str(uuid.uuid4()).upper()
    data, md5 = zipped(ubl(invoice_uuid, "LLK2026000000002"))
    status, response = soap_call(soap, "SendInvoice", sessionId=session_id, fileName=f"{invoice_uuid}.zip",
                                 binaryData=data, hash=md5)
    assert status == 200
    assert response.findtext("Result/Status") == "1000"
    assert response.findtext("Result/Uuid") == invoice_uuid.lower()

    _, response = soap_call(soap, "GetInvoiceStatus", sessionId=session_id, uuid=invoice_uuid)
    assert response.findtext("Result/Status") == "1300"

    status, response = soap_call(soap, "SendInvoice", sessionId=session_id, fileName="x.zip", binaryData=data,
                                 hash="0" * 32)
    assert status == 500 and fault_code(response) == "HASH_MISMATCH"

    assert soap_call(soap, "Logout", sessionId=session_id)[0] == 200
    status, response = soap_call(soap, "GetInvoiceStatus", sessionId=session_id, uuid=invoice_uuid)
    assert status == 500 and fault_code(response) == "SESSION_EXPIRED"
    assert response.findtext("faultstring") == "SESSION_EXPIRED"


def test_soap_rejects_bad_credentials_and_expired_sessions(gib):
    server = soap_integrator.make_server("127.0.0.1", 0, gib, users={SOAP_USER: SOAP_PASSWORD},
                                         session_minutes=0.001)  # 60 ms
    with serving(server):
        status, response = soap_call(server, "Login", username=SOAP_USER, password="wrong")
        assert status == 500 and fault_code(response) == "AUTHENTICATION_FAILED"
        session_id = soap_login(server)
        time.sleep(0.1)
        status, response = soap_call(server, "GetInvoiceStatus", sessionId=session_id, uuid=str(uuid.uuid4()))
        assert fault_code(response) == "SESSION_EXPIRED"
        wsdl = requests.get(server.url + "/EFaturaService?wsdl", timeout=5)
        assert wsdl.status_code == 200 and b"SendInvoice" in wsdl.content
        SafeET.fromstring(wsdl.content)


def test_gib_rejects_a_duplicate_uuid_across_integrators(rest, soap):
    invoice_uuid = str(uuid.uuid4())
    assert rest_send(rest, ubl(invoice_uuid, "LLK2026000000003")).status_code == 202

    again = rest_send(rest, ubl(invoice_uuid, "LLK2026000000003"))
    assert again.status_code == 409 and again.json()["status"] == 1163

    data, md5 = zipped(ubl(invoice_uuid, "LLK2026000000004"))
    status, response = soap_call(soap, "SendInvoice", sessionId=soap_login(soap), fileName="a.zip",
                                 binaryData=data, hash=md5)
    assert status == 500 and fault_code(response) == "1163"
    assert response.findtext("detail/{%s}ServiceError/Uuid" % NS) == invoice_uuid

    # Each integrator answers only for what it sent itself.
    _, response = soap_call(soap, "GetInvoiceStatus", sessionId=soap_login(soap), uuid=invoice_uuid)
    assert fault_code(response) == "INVOICE_NOT_FOUND"


@pytest.mark.parametrize("document, reason", [
    (ubl(str(uuid.uuid4()), "LLK26000000001"), "formatında"),
    (ubl(str(uuid.uuid4()), "LLK2026000000009", customization="TR1.1"), "CustomizationID"),
    (ubl(str(uuid.uuid4()), "LLK2026000000009", profile="HALFATURA"), "ProfileID"),
    (ubl("not-a-uuid", "LLK2026000000009"), "UUID"),
    (b"<Invoice>", "XML"),
    (b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "XML"),
], ids=["number format", "customization", "profile", "uuid", "not xml", "entities"])
def test_gib_rejects_schema_failures_with_1150(rest, document, reason):
    rejected = rest_send(rest, document)
    assert rejected.status_code == 422
    assert rejected.json()["status"] == 1150
    assert reason in rejected.json()["message"]


def test_a_number_is_never_used_twice(rest, soap, gib):
    assert rest_send(rest, ubl(str(uuid.uuid4()), "LLK2026000000005")).status_code == 202
    reused = rest_send(rest, ubl(str(uuid.uuid4()), "LLK2026000000005"))
    assert reused.status_code == 422 and reused.json()["status"] == 1150
    assert "daha önce kullanılmış" in reused.json()["message"]

    data, md5 = zipped(ubl(str(uuid.uuid4()), "LLK2026000000005"))
    _, response = soap_call(soap, "SendInvoice", sessionId=soap_login(soap), fileName="b.zip",
                            binaryData=data, hash=md5)
    assert fault_code(response) == "1150"
    # Another supplier may use the same number.
    assert rest_send(rest, ubl(str(uuid.uuid4()), "LLK2026000000005", supplier_vkn="9876543210")).status_code == 202
    assert [r["code"] for r in gib.rejections()] == [1150, 1150]


def test_soap_checks_the_zip(soap):
    session_id = soap_login(soap)
    not_zip = base64.b64encode(b"plain").decode()
    _, response = soap_call(soap, "SendInvoice", sessionId=session_id, fileName="c.zip", binaryData=not_zip,
                            hash=hashlib.md5(b"plain").hexdigest())
    assert fault_code(response) == "1110"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.xml", b"<a/>")
        archive.writestr("b.xml", b"<b/>")
    _, response = soap_call(soap, "SendInvoice", sessionId=session_id, fileName="d.zip",
                            binaryData=base64.b64encode(buffer.getvalue()).decode(),
                            hash=hashlib.md5(buffer.getvalue()).hexdigest())
    assert fault_code(response) == "1132"
