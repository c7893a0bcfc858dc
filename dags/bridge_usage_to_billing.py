"""
When a file lands. The conference bridge drops its call records (CDR CSV files, with a `.sha256` beside each)
on SFTP; the sensor waits for them deferred (no worker slot), then each file that has stopped growing is taken
once, by its content, into billing's usage.

- **Profiles**: each file source declares its encoding, separator, decimal mark, date style and newline; a file
  that does not match is refused, naming file, line and field, and moved to `error/` with its reason beside it.
  A run that refused a file takes the others, then ends **blocked**: its task fails, naming each refused file.
- **Identity**: the content hash. The same bytes under a new name are a duplicate (skipped); a new file under a
  name taken before is a correction (its calls replace the first file's).
- **Gate**: missing fields, a call id twice, negative durations or counts refuse the file; calls for unknown
  accounts, outside the file's month or taken before are held back (`ledgerlink quarantine`), the rest load.
- **Safety**: the host key is pinned; hostile names in a listing are never fetched or written.
"""
from airflow.sdk import Asset

from ledgerlink.spine import file_intake_dag

BRIDGE_CDR_DROP = Asset(name="bridge_cdr_drop", uri="sftp://bridge/cdr")
BILLING_USAGE = Asset(name="billing_usage", uri="billing://default/usage")

file_intake_dag("bridge_usage_to_billing", landed=BRIDGE_CDR_DROP, produces=BILLING_USAGE, file_pattern="cdr_*.csv",
                doc_md=__doc__)
