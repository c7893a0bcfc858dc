"""The 1C OData hook: Airflow's connection contract, and its client built from the connection."""
from __future__ import annotations

import json

import pytest

from ledgerlink import tasks
from ledgerlink.errors import ConfigurationError
from ledgerlink.onec.hook import OneCODataHook


def test_the_onec_hook_builds_its_client_from_the_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ONEC_DEFAULT", json.dumps({
        "conn_type": "http", "host": "onec.example", "port": 8080, "schema": "https", "login": "exchange",
        "password": "pw-secret", "extra": {"base": "/accounting/", "timeout": 12}}))
    client = tasks.onec_client()
    assert client.service_url.startswith("https://onec.example:8080/accounting/")
    assert client.timeout == 12 and client.session.auth == ("exchange", "pw-secret")
    assert client.max_query_string == 2048  # IIS's default unless the connection says otherwise


def test_the_query_string_limit_comes_from_the_connection(monkeypatch):
    for extra, expected in (({"max_query_string": 8190}, 8190), ({"max_query_string": None}, None)):
        monkeypatch.setenv("AIRFLOW_CONN_ONEC_DEFAULT", json.dumps({
            "conn_type": "http", "host": "onec.example", "login": "exchange", "password": "pw", "extra": extra}))
        assert tasks.onec_client().max_query_string == expected


def test_the_hook_carries_airflows_connection_contract():
    assert (OneCODataHook.conn_name_attr, OneCODataHook.default_conn_name, OneCODataHook.conn_type) == (
        "onec_conn_id", "onec_default", "http")
    assert OneCODataHook.hook_name and "password" in OneCODataHook.secret_fields
    behaviour = OneCODataHook.get_ui_field_behaviour()
    assert set(behaviour) == {"hidden_fields", "relabeling", "placeholders"}
    assert OneCODataHook().onec_conn_id == "onec_default"


def test_how_changes_are_read_comes_from_the_connection(monkeypatch):
    from ledgerlink.flows.payments_from_onec import receipt_feed

    for extra, mode, position in (({"exchange_node": "PAYMENTS"}, "exchange_plan", "message_no:PAYMENTS"),
                                  ({"lookback_days": 3}, "watermark", "receipt_date")):
        monkeypatch.setenv("AIRFLOW_CONN_ONEC_DEFAULT", json.dumps({
            "conn_type": "http", "host": "onec.example", "login": "exchange", "password": "pw", "extra": extra}))
        feed = receipt_feed(tasks.onec_client())
        assert (feed.mode, feed.position_name) == (mode, position)
    assert feed.lookback.days == 3
def test_the_number_of_parallel_1c_sessions_comes_from_the_connection(monkeypatch):
    def client(extra):
        monkeypatch.setenv("AIRFLOW_CONN_ONEC_DEFAULT", json.dumps({
            "conn_type": "http", "host": "onec.example", "login": "exchange", "password": "pw", "extra": extra}))
        return tasks.onec_client()

    assert client({}).sessions == 4  # a 1C server serves several sessions at once
    assert client({"sessions": 1}).sessions == 1 and client({"sessions": 6}).sessions == 6
    first = client({"sessions": 2, "timeout": 7})
    first.setting_a_flow_made = "kept"  # whatever the hook or a flow set on the client travels to every session
    other = first.open_session()
    assert other.session is not first.session and other.session.auth == ("exchange", "pw")
    assert other.setting_a_flow_made == "kept" and other.session.headers["Accept"] == "application/json"
    assert (other.timeout, other.sessions, other.service_url) == (7, 1, "http://onec.example/odata/standard.odata/")
    for wrong in (0, -1, "4", 2.5, True):
        with pytest.raises(ConfigurationError, match="sessions must be a whole number"):
            client({"sessions": wrong})
