"""
Hourly. Reads the bank receipts (`Document_ПоступлениеНаРасчетныйСчет`) registered in 1C since the last message
Ledgerlink acknowledged, checks them (Great Expectations gate), matches each to a billing invoice and applies it to
billing's `payments` once.

- **Master**: 1C is the master of payments (the bank statement is booked there); billing is the master of
  invoices. Billing never writes a receipt back to 1C.
- **Reading**: through the exchange plan's change selection (`SelectChanges` for the connection's
  `exchange_node`, then `NotifyChangesReceived`), or by `Date` where no node is named. 1C is told the changes
  are received only after billing holds them and the reconciliation agrees: a run that dies before reads them
  again and applies nothing twice (each payment's key is derived from the receipt's `Ref_Key`).
- **Matching**: first the invoice number in the payment purpose (spacing, case and dashes tolerated), then the
  payer's open invoice of exactly the amount. Partial payments (less than what is open on the invoice),
  over-payments, receipts naming two invoices or matching two, and receipts matching nothing are held for
  finance with the candidate invoices and their open amounts (`ledgerlink quarantine`), never guessed.
- **Changed or deleted in 1C after being applied**: held for finance beside what billing applied; billing's
  payment is not reversed automatically.
- **Finance**: the `reconcile_and_report` log ends with the summary (money received = applied + held back, per
  currency); the XLSX workbook path is in it.
"""
from airflow.sdk import Asset

from ledgerlink.spine import exchange_dag

BILLING_PAYMENTS = Asset(name="billing_payments", uri="billing://default/payments")

exchange_dag("onec_payments_to_billing", produces=BILLING_PAYMENTS, doc_md=__doc__)  # schedule, tags, facts: the map
