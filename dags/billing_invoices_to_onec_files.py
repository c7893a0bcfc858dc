"""
On the 1st of each month at 03:00 UTC, the month just closed goes to 1C as one EnterpriseData message (for 1C
bases whose OData is not published), with an XLSX register of the same documents for people. Catch-up is on: a
missed month is sent by its own run later, in order, one run at a time.

- **Who is master of what**: billing is the master of the invoices, their lines, numbers, dates, amounts and
  status; 1C keeps its own accounting (postings, and the counterparties, contracts and services it created from
  the message, which it may complete). 1C is the master of whether it has received a message: its answer's
  `ReceivedNo` is the only acknowledgement.
- **What travels**: issued (and since paid) invoices as posted sales documents; cancelled ones unposted and
  marked for deletion, never deleted; drafts never. Only what 1C has not acknowledged as billing holds it.
- **Files**: `in/Message_BILLING_1C_<no>.xml` with its `.sha256` manifest, `registers/…register.xlsx`; each
  uploaded under a temporary name and renamed when complete. 1C answers in `out/`.
- **Not confirmed**: what 1C has not confirmed stays waiting (`ledgerlink planned`) and the next message
  carries it again, with the same content and a new number.
- **Finance**: the task log ends with the message, what 1C acknowledged, what waits and what was held back.
"""
from airflow.sdk import Asset

from ledgerlink.spine import message_exchange_dag

ONEC_CLOSING_MESSAGES = Asset(name="onec_closing_messages", uri="sftp://onec_exchange_sftp/in")

message_exchange_dag("billing_invoices_to_onec_files", produces=ONEC_CLOSING_MESSAGES, doc_md=__doc__)
