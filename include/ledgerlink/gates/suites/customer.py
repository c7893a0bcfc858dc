"""The customer gate: what 1C and the ERP need of a counterparty (billing relays the ERP's legal data)."""
from __future__ import annotations

import pandas as pd

from ledgerlink.gates.model import Check, Suite
from ledgerlink.gates.rules import common_checks, common_derived, present, text_or_none, volume_check
from ledgerlink.taxids import is_canonical_tax_id, is_valid_tax_id

# Fields whose absence a target refuses (NOT NULL in the ERP, required in 1C): a gate failure naming the row.
CUSTOMER_REQUIRED = ("customer_id", "legal_name", "tax_id", "country", "entity_kind", "currency")
CUSTOMER_TEXT = ("customer_id", "legal_name", "tax_id", "kpp", "address", "city", "email")
ENTITY_KINDS = ["company", "person"]  # 1C's ЮридическоеЛицо / ФизическоеЛицо


def derive(df: pd.DataFrame) -> dict:
    countries = [text_or_none(c) for c in df["country"]]
    tax_ids = [text_or_none(t) for t in df["tax_id"]]
    out = common_derived(df, CUSTOMER_REQUIRED, CUSTOMER_TEXT)
    out["address_present"] = present(df, "address")  # not NULL, and not only blanks
    # A missing tax id fails "tax_id present"; this rule judges the ids that are there.
    out["tax_id_check_digits_ok"] = [t is None or is_valid_tax_id(c, t) for c, t in zip(countries, tax_ids)]
    # Stored exactly as the tax office writes it: "6135317476", not " 6135 317476 ". The raw value is refused,
    # never silently compacted: billing (the ERP's relay) is what finance corrects, and 1C would keep the spaces.
    out["tax_id_canonical"] = [t is None or is_canonical_tax_id(t) for t in tax_ids]
    russian_company = (df["country"] == "RU").fillna(False) & (df["entity_kind"] == "company").fillna(False)
    # A code typed by hand: "C001 " or "c001" beside "C001" are two billing customers but one counterparty code
    # in 1C, which compares codes without case and trims them. All such rows are held back, as twins are.
    keys = df["customer_id"].astype("string")
    out["customer_id_trimmed"] = (keys.str.strip() == keys).fillna(True).to_numpy(dtype=bool)
    folded = keys.str.strip().str.casefold()
    spellings = keys.groupby(folded, dropna=True).transform("nunique")
    out["customer_id_one_spelling"] = ~(spellings > 1).fillna(False).to_numpy(dtype=bool)
    out["kpp_well_formed"] = (~russian_company | df["kpp"].fillna("").str.fullmatch(r"[0-9]{9}").fillna(False)
                              ).to_numpy(dtype=bool)
    return out


def suite(max_rows: int | None) -> Suite:
    return Suite("customer", "customer_id", derive=derive, checks=(
        volume_check(max_rows),
        *common_checks(CUSTOMER_REQUIRED, CUSTOMER_TEXT),
        # Rows sharing a key are all held back: which one billing meant is for a person to say.
        Check("customer id unique in billing", "ExpectColumnValuesToBeUnique", {"column": "customer_id"}, False),
        Check("customer id without leading or trailing spaces", "ExpectColumnValuesToBeInSet",
              {"column": "customer_id_trimmed", "value_set": [True]}, False),
        Check("customer id not spelled two ways (case or spaces) in billing", "ExpectColumnValuesToBeInSet",
              {"column": "customer_id_one_spelling", "value_set": [True]}, False),
        Check("tax id check digits valid", "ExpectColumnValuesToBeInSet",
              {"column": "tax_id_check_digits_ok", "value_set": [True]}, True),
        Check("tax id stored in its canonical form (digits only, no spaces)", "ExpectColumnValuesToBeInSet",
              {"column": "tax_id_canonical", "value_set": [True]}, True),
        Check("country is TR or RU", "ExpectColumnValuesToBeInSet", {"column": "country", "value_set": ["TR", "RU"]}, True),
        # Anything else (say "Company") would reach 1C as a private person and skip the KPP rule.
        Check("entity kind is company or person", "ExpectColumnValuesToBeInSet",
              {"column": "entity_kind", "value_set": ENTITY_KINDS}, True),
        Check("currency is TRY or RUB", "ExpectColumnValuesToBeInSet",
              {"column": "currency", "value_set": ["TRY", "RUB"]}, True),
        Check("KPP is 9 digits for a Russian company", "ExpectColumnValuesToBeInSet",
              {"column": "kpp_well_formed", "value_set": [True]}, False),
        Check("address present", "ExpectColumnValuesToBeInSet", {"column": "address_present", "value_set": [True]},
              False),
        Check("legal name fits 1C (150 characters)", "ExpectColumnValueLengthsToBeBetween",
              {"column": "legal_name", "min_value": 1, "max_value": 150}, False),
    ))
