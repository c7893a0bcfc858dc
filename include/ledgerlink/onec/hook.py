"""The Airflow hook for 1C's OData interface, built on an Airflow Connection.

Connection: ``host``, ``port``, ``schema`` (http or https), ``login``, ``password`` (secret, masked by
Airflow), extra ``{"base": "/<infobase publication>", "timeout": 30, "max_query_string": 2048, "sessions": 4}``
(the web server's query-string limit in bytes: IIS 2,048 by default, Apache about 8,190; null for none; how many
sessions a load holds with the base at once: 4 by default, since a 1C server serves several at once, each
session holding a licence while it works; 1 sends one record at a time), optionally ``"organisation_inn"`` (the
organisation billing's documents are issued by, where the base keeps several), and for reading changes
``"exchange_node": "<code>"`` (an exchange plan node: change selection; absent: by date, with
``"lookback_days"``) and ``"exchange_plan"`` (default ``ExchangePlan_Ledgerlink``).
"""
from __future__ import annotations

from airflow.sdk import BaseHook

from ledgerlink.connections import get_connection
from ledgerlink.errors import ConfigurationError
from ledgerlink.onec.client import IIS_MAX_QUERY_STRING, ODataClient

DEFAULT_SESSIONS = 4


class OneCODataHook(BaseHook):
    conn_name_attr = "onec_conn_id"
    default_conn_name = "onec_default"
    conn_type = "http"
    hook_name = "1C:Enterprise OData"
    secret_fields = ("password",)

    def __init__(self, onec_conn_id: str = default_conn_name):
        super().__init__()
        self.onec_conn_id = onec_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        return {"hidden_fields": [], "relabeling": {"schema": "Scheme (http/https)"},
                "placeholders": {"extra": '{"base": "/accounting", "timeout": 30}'}}

    def get_conn(self) -> ODataClient:
        connection = get_connection(self.onec_conn_id)  # outside a task too (the CLI's --check-targets)
        if not connection.host:
            raise ConfigurationError(f"connection {self.onec_conn_id!r} has no host")
        extra = connection.extra_dejson
        scheme = connection.schema or "http"
        port = f":{connection.port}" if connection.port else ""
        base = "/" + str(extra.get("base", "")).strip("/")
        # The web server's query-string limit (IIS 2,048 by default; null: none): long key lists are split under it.
        max_query_string = extra.get("max_query_string", IIS_MAX_QUERY_STRING)
        sessions = extra.get("sessions", DEFAULT_SESSIONS)
        if isinstance(sessions, bool) or not isinstance(sessions, int) or sessions < 1:
            raise ConfigurationError(f"connection {self.onec_conn_id!r}: extra sessions must be a whole number "
                                     f"of at least 1 (parallel 1C sessions), not {sessions!r}")
        client = ODataClient(f"{scheme}://{connection.host}{port}{base}", connection.login or "",
                             connection.password or "", timeout=float(extra.get("timeout", 30)),
                             max_query_string=None if max_query_string is None else int(max_query_string),
                             sessions=sessions)
        # The organisation documents are issued by (its ИНН); without it, the base's only organisation.
        client.organisation_inn = str(extra["organisation_inn"]) if extra.get("organisation_inn") else None
        # How changes are read from this base (the payments flow): an exchange plan's node, or by date.
        client.exchange_node = extra.get("exchange_node") or None
        client.exchange_plan = extra.get("exchange_plan") or "ExchangePlan_Ledgerlink"
        client.lookback_days = int(extra.get("lookback_days", 7))
        return client
