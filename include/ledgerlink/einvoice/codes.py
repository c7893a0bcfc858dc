"""GİB's words for documents, light to import (the DAG files read the routing at parse time)."""
from __future__ import annotations

EFATURA, EARSIV = "efatura", "earsiv"
TEMELFATURA, TICARIFATURA, EARSIVFATURA = "TEMELFATURA", "TICARIFATURA", "EARSIVFATURA"
SATIS, IADE = "SATIS", "IADE"
PROFILES = {EFATURA: (TEMELFATURA, TICARIFATURA), EARSIV: (EARSIVFATURA,)}
TYPE_CODES = (SATIS, IADE)
