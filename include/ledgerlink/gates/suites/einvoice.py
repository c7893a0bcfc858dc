"""The e-invoice gate: one row per invoice about to become a GİB document (billing's totals beside its lines'
sums). A blocking failure (a key or amount missing) stops the run; an invoice GİB would refuse is held back
by its key with the reason, and the others go on: a VKN/TCKN without valid check digits, totals that do not
add up, amounts whose sign disagrees with the type (SATIS positive, IADE all negative), a credit note that does
not name the invoice it returns, no lines, a currency other than TRY."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ledgerlink.gates.model import Check, Suite
from ledgerlink.gates.rules import common_checks, common_derived, is_missing, present, text_or_none, volume_check
from ledgerlink.taxids import is_canonical_tax_id, is_valid_tax_id

EINVOICE_REQUIRED = ("invoice_id", "customer_id", "issue_date", "currency", "net_minor", "vat_minor", "gross_minor")
EINVOICE_TEXT = ("invoice_id", "legal_name", "tax_id", "address", "city")


def derive(df: pd.DataFrame) -> dict:
    out = common_derived(df, EINVOICE_REQUIRED, EINVOICE_TEXT)
    tax_ids = [text_or_none(t) for t in df["tax_id"]]
    out["tax_id_valid"] = [t is not None and is_canonical_tax_id(t) and is_valid_tax_id("TR", t) for t in tax_ids]
    out["recipient_present"] = present(df, "legal_name") & present(df, "address") & present(df, "city")
    net, vat, gross = (df[c].to_numpy(dtype=np.int64) for c in ("net_minor", "vat_minor", "gross_minor"))
    out["totals_add_up"] = ((net == df["lines_net_minor"].to_numpy()) & (vat == df["lines_vat_minor"].to_numpy())
                            & (gross == df["lines_gross_minor"].to_numpy()) & (gross == net + vat))
    credit_note = gross < 0
    lines, negative, positive = (df[c].to_numpy() for c in ("line_count", "negative_lines", "positive_lines"))
    out["has_lines"] = lines > 0
    out["signs_agree_with_type"] = np.where(credit_note, positive == 0, negative == 0)
    names_returned = np.array([not is_missing(v) and str(v).strip() != "" for v in df["credits_invoice_id"]],
                              dtype=bool) if len(df) else np.zeros(0, dtype=bool)
    out["credit_note_names_its_invoice"] = ~credit_note | names_returned
    return out


def suite(max_rows: int | None) -> Suite:
    held_back = [
        ("recipient's VKN/TCKN has valid check digits (digits only)", "tax_id_valid"),
        ("recipient's name and address present", "recipient_present"),
        ("billing's totals = the sums of its lines, gross = net + VAT", "totals_add_up"),
        ("the invoice has lines", "has_lines"),
        ("amounts' sign agrees with the type (SATIS positive, IADE all negative)", "signs_agree_with_type"),
        ("a credit note (IADE) names the invoice it returns", "credit_note_names_its_invoice"),
    ]
    return Suite("einvoice", "invoice_id", derive=derive, checks=(
        volume_check(max_rows),
        *common_checks(EINVOICE_REQUIRED, EINVOICE_TEXT),
        Check("invoice id unique in billing", "ExpectColumnValuesToBeUnique", {"column": "invoice_id"}, False),
        *(Check(name, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": [True]}, False)
          for name, column in held_back),
        Check("currency is TRY (e-invoices in other currencies need GİB's exchange rate: not yet)",
              "ExpectColumnValuesToBeInSet", {"column": "currency", "value_set": ["TRY"]}, False),
    ))
