"""Ledgerlink's Airflow plugin, registered through the ``airflow.plugins`` entry point (``pyproject.toml``).

The Exchange ledger page (what went where and when, what is planned, what was held back) will live here,
as the plugin's views; until then ``ledgerlink history|planned|quarantine`` answers the same questions.
Importing this module only defines the class: no views, no connections, no I/O.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class LedgerlinkPlugin(AirflowPlugin):
    """Ledgerlink in the Airflow UI; no views yet."""

    name = "ledgerlink"
