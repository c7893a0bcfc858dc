"""The 1C OData hook: Airflow's connection contract, and its client built from the connection."""
from __future__ import annotations

import json

from ledgerlink import tasks
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
