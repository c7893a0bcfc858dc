"""Ledgerlink as an Airflow provider (the ``apache_airflow_provider`` entry point in ``pyproject.toml``).

No ``connection-types`` yet: each of our hooks uses a connection type another provider owns (``postgres``
for the billing and ERP hooks, ``http`` for 1C), and a type belongs to one hook. A hook with a type of its
own is listed here so that its connection form appears in the UI.
"""
from __future__ import annotations


def get_provider_info() -> dict:
    return {
        "package-name": "ledgerlink",
        "name": "Ledgerlink",
        "description": "Moves money data between billing, 1C:Enterprise, an ERP, a CRM and e-invoice "
                       "integrators.",
    }
