"""What the e-invoice flow reads from billing: issued invoices, never drafts or cancelled ones."""
from __future__ import annotations

import sqlalchemy as sa

from ledgerlink.billing.einvoices import read_einvoice_headers
from sandbox.generator import generate_billing


def test_a_draft_invoice_is_not_an_e_invoice_until_it_is_issued(tmp_path):
    generate_billing(tmp_path / "billing.db", seed=4, customers=12)
    billing = sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}")
    with billing.begin() as conn:
        issued, customer = conn.execute(sa.text(
            "SELECT i.invoice_id, i.customer_id FROM invoices i JOIN customers c USING (customer_id) "
            "WHERE c.country = 'TR' AND i.status <> 'cancelled' ORDER BY i.invoice_id LIMIT 1")).one()
        for invoice_id, status in (("UI-DRAFT-202611", "draft"), ("CANCELLED-1", "cancelled")):
            conn.execute(sa.text(
                "INSERT INTO invoices SELECT :new, customer_id, contract_id, '', issue_date, period_start, period_end,"
                " currency, net_minor, vat_minor, gross_minor, :status, updated_at, NULL FROM invoices"
                " WHERE invoice_id = :i"), {"new": invoice_id, "status": status, "i": issued})
    read = set(read_einvoice_headers(billing, "2000-01-01")["invoice_id"])
    assert issued in read
    assert "UI-DRAFT-202611" not in read, "a draft changes every night until month-end issues it"
    assert "CANCELLED-1" not in read
    with billing.begin() as conn:
        conn.execute(sa.text("UPDATE invoices SET status = 'issued' WHERE invoice_id = 'UI-DRAFT-202611'"))
    assert "UI-DRAFT-202611" in set(read_einvoice_headers(billing, "2000-01-01")["invoice_id"])
