"""Ledgerlink's Airflow plugin, registered through the ``airflow.plugins`` entry point (``pyproject.toml``).

The Exchange ledger page: a FastAPI app the API server mounts at ``/ledgerlink`` (``fastapi_apps``) and a
navigation entry (``external_views``, under Browse) that shows it inside Airflow's UI. Airflow's own
authentication guards it (:mod:`ledgerlink.ui.app`). Importing this module builds the app object only: no
connection, no file, no query until a request comes.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/ledgerlink"


def _fastapi_apps() -> list[dict]:
    from ledgerlink.ui.app import create_app

    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Exchange ledger"}]


class LedgerlinkPlugin(AirflowPlugin):
    """The Exchange ledger page: where every record went, what is planned, what was held back, the runs."""

    name = "ledgerlink"
    fastapi_apps = _fastapi_apps()
    external_views = [{
        "name": "Exchange ledger",
        # Relative to the UI's base URL (no leading slash), so the page works behind a path prefix too.
        "href": URL_PREFIX.lstrip("/") + "/",
        "url_route": "exchange-ledger",
        "destination": "nav",
        "category": "browse",
    }]
