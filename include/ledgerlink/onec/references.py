"""What both roads to 1C (OData: ``onec.documents``; the EnterpriseData file exchange: ``onec.enterprise_data``) must
agree on, kept once: the keys billing's records get in 1C, and the classifier codes they are found by.

A document sent one way and later the other must land on the same object in 1C: one derivation, one table.
"""
from __future__ import annotations

import functools
import uuid

from ledgerlink.onec.counterparties import LEDGERLINK_NAMESPACE

# ISO 4217 letters -> ОКВ (the numeric code 1C's Catalog_Валюты keeps as Code).
OKV = {"RUB": "643", "TRY": "949", "USD": "840", "EUR": "978", "KZT": "398", "BYN": "933"}
# Billing's tariff unit -> ОКЕИ code (1C's Catalog_КлассификаторЕдиницИзмерения keeps it as Code).
OKEI = {"minute": "355", "piece": "796", "unit": "876", "hour": "356", "month": "362"}
# Billing's VAT rate (percent) -> 1C's enumeration СтавкиНДС (the general and reduced rates; 0 % is НДС0).
VAT_RATES = {"0": "НДС0", "5": "НДС5", "7": "НДС7", "10": "НДС10", "18": "НДС18", "20": "НДС20", "22": "НДС22"}


def sale_key(invoice_id: str) -> str:
    """The sales document's Ref_Key: uuid5 of billing's invoice key, the same on every run, machine and road."""
    return str(uuid.uuid5(LEDGERLINK_NAMESPACE, f"billing/invoice/{invoice_id}"))


def vat_invoice_key(sale_ref: str) -> str:
    """The VAT invoice's key, derived from its sale's (the ledger names an invoice by its sale)."""
    return str(uuid.uuid5(LEDGERLINK_NAMESPACE, f"billing/invoice-vat/{sale_ref}"))


@functools.lru_cache(maxsize=65536)  # a month repeats its contracts and tariffs thousands of times
def contract_key(contract_id: str) -> str:
    return str(uuid.uuid5(LEDGERLINK_NAMESPACE, f"billing/contract/{contract_id}"))


@functools.lru_cache(maxsize=4096)
def product_key(tariff_id: str) -> str:
    return str(uuid.uuid5(LEDGERLINK_NAMESPACE, f"billing/tariff/{tariff_id}"))
