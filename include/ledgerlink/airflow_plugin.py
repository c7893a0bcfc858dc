"""Ledgerlink's Airflow plugin, registered through the ``airflow.plugins`` entry point (``pyproject.toml``).

The Exchange ledger page: a FastAPI app the API server mounts at ``/ledgerlink`` (``fastapi_apps``) and a
navigation entry (``external_views``, under Browse) that shows it inside Airflow's UI. Airflow's own
authentication guards it (:mod:`ledgerlink.ui.app`). Importing this module imports nothing else of Ledgerlink:
no connection, no file, no query, no model until a request comes.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/ledgerlink"


class _LedgerPageApp:
    """The page's ASGI app, built on its first request (:func:`ledgerlink.ui.app.create_app`): every Airflow
    process loads plugins (the scheduler, the workers, the DAG processor), and only the API server ever calls
    this, so none of them imports the ledger's models or FastAPI routes for nothing."""

    def __init__(self):
        self._app = None

    async def __call__(self, scope, receive, send):
        if self._app is None:
            from ledgerlink.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "ledgerlink.ui.app:create_app()"


class LedgerlinkPlugin(AirflowPlugin):
    """The Exchange ledger page: where every record went, what is planned, what was held back, the runs."""

    name = "ledgerlink"
    fastapi_apps = [{"app": _LedgerPageApp(), "url_prefix": URL_PREFIX, "name": "Exchange ledger"}]
    external_views = [{
        "name": "Exchange ledger",
        # Relative to the UI's base URL (no leading slash), so the page works behind a path prefix too.
        "href": URL_PREFIX.lstrip("/") + "/",
        "url_route": "exchange-ledger",
        "destination": "nav",
        "category": "browse",
    }]
