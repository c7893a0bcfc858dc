"""The 1C connector against the real 1C stand-in as a publication behind IIS shows it: Atom by default, a 2,048-byte
query-string limit, an HTML login page with 200. Every such answer is a clear terminal error, never garbage
parsed or a retry that cannot succeed."""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import requests

from ledgerlink.errors import AuthenticationFailed, TerminalError, TransientError
from ledgerlink.onec.client import NotODataJSON, ODataClient, URLTooLong
from tests.support.onec_standin import onec, start  # noqa: F401 - fixtures
from tests.support.sandbox_http import serving

COUNTERPARTIES = "Catalog_Контрагенты"
SALES = "Document_РеализацияТоваровУслуг"




def client_for(server, password: str = "secret", **options) -> ODataClient:
    return ODataClient(server.url + "/demo", "ledgerlink", password, timeout=5, **options)


@pytest.fixture
def client(onec):
    odata = client_for(onec)
    yield odata
    odata.close()


def query_lengths(client: ODataClient) -> list[int]:
    """Records the query-string length of every request the client sends (as it went on the wire)."""
    lengths: list[int] = []
    client.session.hooks["response"].append(
        lambda response, *args, **kwargs: lengths.append(len(response.request.url.partition("?")[2])))
    return lengths


def test_the_connector_works_against_a_base_that_answers_atom_by_default(onec, client):
    created = client.create(COUNTERPARTIES, {"Description": "ООО Ромашка", "ИНН": "7701234567"})
    assert client.get(COUNTERPARTIES, created["Ref_Key"])["ИНН"] == "7701234567"
    assert [c["Description"] for c in client.list(COUNTERPARTIES)] == ["ООО Ромашка"]
    assert client.count(COUNTERPARTIES) == 1
    # The same base answers Atom to a request that does not ask for JSON: decode refuses it, clearly.
    atom = requests.get(client.service_url + COUNTERPARTIES, auth=("ledgerlink", "secret"), timeout=5)
    assert atom.headers["Content-Type"].startswith("application/atom+xml")
    with pytest.raises(NotODataJSON, match="not OData JSON"):
        client.decode(atom)


def test_numbers_arrive_as_decimal_integral_or_not(client):
    document = client.create(SALES, {"СуммаДокумента": 100, "Услуги": [{"Сумма": Decimal("0.10")}]})
    again = client.get(SALES, document["Ref_Key"])
    assert again["СуммаДокумента"] == Decimal("100") and isinstance(again["СуммаДокумента"], Decimal)
    assert again["Услуги"][0]["Сумма"] == Decimal("0.10") and again["Услуги"][0]["LineNumber"] == "1"


def test_an_html_login_page_with_status_200_is_authentication_failed(tmp_path):
    with serving(start(tmp_path, login_page=True)) as server:
        wrong = client_for(server, password="nope")
        with pytest.raises(AuthenticationFailed, match="HTML page") as raised:
            list(wrong.list(COUNTERPARTIES))
        assert raised.value.status == 200
        with pytest.raises(AuthenticationFailed):
            wrong.get(COUNTERPARTIES, str(uuid.uuid4()))  # not taken for "no such object"
        assert list(client_for(server).list(COUNTERPARTIES)) == []


def test_a_2049_byte_query_is_refused_before_sending_or_when_the_server_answers_404_15(onec, client):
    prefix_bytes = len("%24format=json&%24filter=Code+eq+%27%27")
    fits = "Code eq '" + "x" * (2048 - prefix_bytes) + "'"
    over = "Code eq '" + "x" * (2049 - prefix_bytes) + "'"
    lengths = query_lengths(client)
    with pytest.raises(URLTooLong, match="2049-byte query string, over the limit of 2048") as refused:
        client.count(COUNTERPARTIES, filter=over)
    assert isinstance(refused.value, TerminalError) and not isinstance(refused.value, TransientError)
    assert refused.value.status is None  # refused here: nothing was sent
    client.count(COUNTERPARTIES, filter=fits)
    assert max(lengths) == 2048
    # A client told of no limit sends it; IIS (the stand-in) answers 404.15: terminal too, naming the length.
    unlimited = client_for(onec, max_query_string=None)
    with pytest.raises(URLTooLong, match="2049-byte query string") as answered:
        unlimited.count(COUNTERPARTIES, filter=over)
    assert answered.value.status == 404
    unlimited.close()


def test_a_request_line_over_the_limit_is_terminal_too(tmp_path):
    with serving(start(tmp_path, max_query_string=None, max_request_line=3000)) as server:
        unlimited = client_for(server, max_query_string=None)
        with pytest.raises(URLTooLong) as raised:
            unlimited.count(COUNTERPARTIES, filter="Code eq '" + "x" * 3000 + "'")
        assert raised.value.status == 414


def test_list_by_keys_splits_5000_keys_under_the_limit_and_returns_all(onec, client):
    ours = [client.create(COUNTERPARTIES, {"Description": f"К{i}"})["Ref_Key"] for i in range(40)]
    unknown = [str(uuid.uuid4()) for _ in range(5000 - len(ours))]
    keys = unknown[:2500] + ours + unknown[2500:] + ours[:5]  # repeated keys are asked for once
    lengths = query_lengths(client)
    found = list(client.list_by_keys(COUNTERPARTIES, keys, select=["Ref_Key", "Description"]))
    assert sorted(r["Ref_Key"] for r in found) == sorted(ours)
    assert lengths and max(lengths) <= 2048
    assert min(lengths[:-1]) > 2048 - 100  # every request but the last is filled up to the limit
    assert len(lengths) < 5000 / 30  # dozens of keys per request, not one each


def test_list_by_keys_on_a_string_field_quotes_and_encodes_its_keys(client):
    names = ["O'Brien Ltd", "Ромашка & сыновья", "50% off"]
    # НаименованиеПолное: a string of unlimited length (ИНН holds 12 characters and would cut these).
    for name in names:
        client.create(COUNTERPARTIES, {"Description": name, "НаименованиеПолное": name})
    lengths = query_lengths(client)
    cyrillic = [f"Имя-{i}-{'ж' * 20}" for i in range(300)]
    found = list(client.list_by_keys(COUNTERPARTIES, cyrillic + names, field="НаименованиеПолное"))
    assert sorted(r["НаименованиеПолное"] for r in found) == sorted(names)
    assert max(lengths) <= 2048 and len(lengths) > 1
    with pytest.raises(URLTooLong):
        list(client.list_by_keys(COUNTERPARTIES, ["ж" * 1000], field="НаименованиеПолное"))


def test_inlinecount_is_never_combined_with_paging(client):
    with pytest.raises(ValueError, match="inlinecount"):
        client.request("GET", COUNTERPARTIES, params={"$inlinecount": "allpages", "$top": "10"})
    body = client.decode(client.request("GET", COUNTERPARTIES, params={"$inlinecount": "allpages"}))
    assert body["odata.count"] == "0"
