"""The CRM stand-in over real HTTP: auth, upsert by external id, cursor paging, archive, rate limits, faults."""
from __future__ import annotations

import time
from datetime import datetime

import pytest
import requests

from sandbox import crm
from sandbox.httpbase import set_faults
from tests.support.sandbox_http import serving

TOKEN = "test-token"


@pytest.fixture
def crm_server(tmp_path):
    server = crm.make_server("127.0.0.1", 0, tmp_path / "crm.sqlite", tokens={TOKEN: "ledgerlink"},
                             rate_limit=(1000, 1.0))
    with serving(server):
        yield server


@pytest.fixture
def api(crm_server):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    base = crm_server.url + "/api/v1"
    yield lambda method, path, **kw: session.request(method, base + path, timeout=5, **kw)
    session.close()


def test_requests_without_a_valid_token_get_401(crm_server):
    missing = requests.get(crm_server.url + "/api/v1/accounts", timeout=5)
    wrong = requests.get(crm_server.url + "/api/v1/accounts", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert missing.status_code == wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")


def test_upsert_by_external_id_creates_then_replaces(api):
    created = api("PUT", "/accounts/by-external-id/ERP-1", json={"name": "Romashka", "segment": "SMB"})
    assert created.status_code == 201
    record = created.json()
    assert record["external_id"] == "ERP-1" and record["archived"] is False
    assert datetime.fromisoformat(record["updated_at"]).tzinfo is not None

    replaced = api("PUT", "/accounts/by-external-id/ERP-1", json={"name": "Romashka LLC"})
    assert replaced.status_code == 200
    assert replaced.json()["id"] == record["id"]
    assert "segment" not in replaced.json(), "PUT replaces the free fields whole"
    assert replaced.json()["updated_at"] > record["updated_at"]

    assert api("GET", f"/accounts/{record['id']}").json()["name"] == "Romashka LLC"
    assert api("GET", "/accounts/by-external-id/ERP-1").json()["id"] == record["id"]
    conflict = api("POST", "/accounts", json={"external_id": "ERP-1", "name": "again"})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "external_id_taken"


def test_patch_merges_and_delete_removes(api):
    record = api("POST", "/contacts", json={"external_id": "C-1", "name": "Ivan", "phone": "1"}).json()
    patched = api("PATCH", f"/contacts/{record['id']}", json={"phone": "2"}).json()
    assert (patched["name"], patched["phone"]) == ("Ivan", "2")
    assert api("DELETE", f"/contacts/{record['id']}").status_code == 204
    missing = api("GET", f"/contacts/{record['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_paging_with_cursor_and_updated_since(api):
    for n in range(7):
        api("PUT", f"/deals/by-external-id/D-{n}", json={"amount": str(n)})
    seen, cursor, pages = [], None, 0
    while True:
        params = {"page_size": 3, **({"cursor": cursor} if cursor else {})}
        page = api("GET", "/deals", params=params).json()
        seen += [r["external_id"] for r in page["data"]]
        pages += 1
        if pages == 1:
            # A record changed while paging moves to the end: one already seen comes again, nothing is skipped.
            api("PUT", "/deals/by-external-id/D-1", json={"amount": "11"})
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"D-{n}" for n in range(7)] + ["D-1"]
    assert pages == 3

    everything = api("GET", "/deals", params={"page_size": 100}).json()["data"]
    watermark = everything[-2]["updated_at"]
    since = api("GET", "/deals", params={"updated_since": watermark}).json()["data"]
    assert [r["external_id"] for r in since] == ["D-6", "D-1"], "inclusive watermark"
    naive = api("GET", "/deals", params={"updated_since": "2026-01-01T00:00:00"})
    assert naive.status_code == 400
    assert api("GET", "/deals", params={"cursor": "garbage!"}).status_code == 400


def test_archived_records_are_listed_only_when_asked(api):
    keep = api("PUT", "/products/by-external-id/P-1", json={"name": "Bridge minutes"}).json()
    gone = api("PUT", "/products/by-external-id/P-2", json={"name": "Fax"}).json()
    archived = api("POST", f"/products/{gone['id']}/archive")
    assert archived.status_code == 200 and archived.json()["archived"] is True
    assert archived.json()["updated_at"] > gone["updated_at"]

    default = api("GET", "/products").json()["data"]
    assert [r["id"] for r in default] == [keep["id"]]
    listed = api("GET", "/products", params={"include_archived": "true"}).json()["data"]
    assert {r["id"]: r["archived"] for r in listed} == {keep["id"]: False, gone["id"]: True}
    assert api("POST", f"/products/{gone['id']}/unarchive").json()["archived"] is False


def test_state_survives_a_restart(tmp_path):
    crm.seed(tmp_path / "crm.sqlite", {"contract-rates": [{"external_id": "R-1", "rate": "12.50"}]})
    with serving(crm.make_server("127.0.0.1", 0, tmp_path / "crm.sqlite", tokens={TOKEN: "ledgerlink"})) as server:
        response = requests.get(server.url + "/api/v1/contract-rates", headers={"Authorization": f"Bearer {TOKEN}"},
                                timeout=5)
    assert [r["rate"] for r in response.json()["data"]] == ["12.50"]


def test_going_over_the_rate_limit_gets_429_with_retry_after(tmp_path):
    server = crm.make_server("127.0.0.1", 0, tmp_path / "crm.sqlite", tokens={TOKEN: "ledgerlink"},
                             rate_limit=(3, 1.0))
    with serving(server), requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        statuses = [session.get(server.url + "/api/v1/accounts", timeout=5) for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        limited = statuses[-1]
        assert limited.json()["error"]["code"] == "rate_limited"
        assert limited.headers["Retry-After"] == "1"
        time.sleep(1.05)
        assert session.get(server.url + "/api/v1/accounts", timeout=5).status_code == 200


def test_fault_rule_fails_the_next_two_requests_then_lets_them_through(crm_server, api):
    set_faults(crm_server.url, [{"mode": "error", "status": 503, "count": 2, "path": "/api/v1"}])
    assert [api("GET", "/accounts").status_code for _ in range(3)] == [503, 503, 200]
