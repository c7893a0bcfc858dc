"""
Nightly. Sends billing's issued invoices to 1C over OData: for each, a sales document
(`Document_РеализацияТоваровУслуг` with its `Услуги`) and the VAT invoice issued for it
(`Document_СчетФактураВыданный`), both posted through 1C's `Post` action.

- **Masters**: billing is the master of invoices, their lines, contracts and tariffs (1C gets them, with the
  contracts and the services nomenclature written before the documents that point at them); the ERP, relayed by
  billing through `billing_customers_to_onec`, of the counterparties; 1C of what its accountants do with the
  documents after we wrote them, and of payments (the reverse flow).
- **Order**: the counterparty must already be in 1C. This flow does not create it (the customers flow owns it):
  an invoice whose counterparty is not there yet is held back, naming it, and goes with the first run after it.
- **Keys**: every object's `Ref_Key` is derived from billing's key: a rerun or a replay creates nothing new.
- **Gate**: a missing key or amount blocks the run; totals that are not the sums of the lines, a contract of
  another customer or currency, a VAT rate 1C has no value for hold the invoice back (quarantine).
- **Cancelled in billing**: the documents are unposted and marked for deletion in 1C, never deleted.
- **Conflicts** (`target_edits_held`): an invoice edited in 1C since Ledgerlink wrote it (its `DataVersion` moved)
  is never overwritten: the change is held back and shown to finance with both values (`ledgerlink quarantine`).
- **Reconciliation**: per currency and VAT rate, 1C's posted net and VAT equal billing's to the kopek; every
  invoice has exactly one posted sale and one posted VAT invoice.
- **Ledger**: `ledgerlink history --target onec --entity invoice` shows each request; `ledgerlink planned` what
  is still unconfirmed.
"""
from airflow.sdk import Asset

from ledgerlink.spine import exchange_dag

ONEC_SALES = Asset(name="onec_sales_documents", uri="onec://default/Document_RealizatsiyaTovarovUslug")

exchange_dag("billing_invoices_to_onec", produces=ONEC_SALES, doc_md=__doc__)  # schedule, tags, facts: the map
