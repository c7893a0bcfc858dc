"""The Airflow hook for an e-invoice integrator, built on an Airflow Connection.

Connection (type ``http``): ``host``, ``port``, ``schema`` (http or https); REST: ``password`` = the API key;
SOAP: ``login`` and ``password``. Extra: ``{"timeout": 30}`` (seconds to wait for an answer). The secret
fields are masked by Airflow and never written anywhere by Ledgerlink.
"""
from __future__ import annotations

from airflow.sdk import BaseHook

from ledgerlink.connections import get_connection
from ledgerlink.einvoice.clients import RestIntegrator, SoapIntegrator
from ledgerlink.einvoice.routing import Integrator
from ledgerlink.errors import ConfigurationError


class EInvoiceIntegratorHook(BaseHook):
    conn_name_attr = "einvoice_conn_id"
    default_conn_name = "einvoice_rest_default"
    conn_type = "http"
    hook_name = "e-invoice integrator (GİB)"
    secret_fields = ("password",)

    def __init__(self, integrator: Integrator):
        super().__init__()
        self.integrator = integrator
        self.einvoice_conn_id = integrator.connection

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        return {"hidden_fields": [], "relabeling": {"schema": "Scheme (http/https)",
                                                    "password": "API key (REST) or password (SOAP)"},
                "placeholders": {"extra": '{"timeout": 30}'}}

    def get_conn(self) -> RestIntegrator | SoapIntegrator:
        connection = get_connection(self.einvoice_conn_id)
        if not connection.host or not connection.password:
            raise ConfigurationError(f"connection {self.einvoice_conn_id!r} ({self.integrator.name}) needs a host "
                                     "and a password (the API key or the SOAP password)")
        port = f":{connection.port}" if connection.port else ""
        base = f"{connection.schema or 'http'}://{connection.host}{port}"
        timeout = float(connection.extra_dejson.get("timeout", 30))
        if self.integrator.protocol == "rest":
            return RestIntegrator(self.integrator.name, base, connection.password, timeout=timeout)
        if not connection.login:
            raise ConfigurationError(f"connection {self.einvoice_conn_id!r} ({self.integrator.name}) needs a login")
        return SoapIntegrator(self.integrator.name, base, connection.login, connection.password, timeout=timeout)
