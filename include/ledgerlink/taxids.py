"""Tax identifier check digits: Turkish VKN/TCKN and Russian INN (via python-stdnum)."""
from __future__ import annotations

import re

from stdnum.exceptions import ValidationError
from stdnum.ru import inn
from stdnum.tr import tckimlik, vkn


def is_valid_tax_id(country: str | None, tax_id: str | None) -> bool:
    """True when the id has the right length and check digits for its country."""
    if not tax_id or not country:
        return False
    # The check digits are judged on the digits; whether they are stored that way is is_canonical_tax_id's rule.
    digits = re.sub(r"[\s.\-/]", "", tax_id)
    try:
        if country == "TR":
            return bool(vkn.validate(digits)) if len(digits) == 10 else bool(tckimlik.validate(digits))
        if country == "RU":
            return bool(inn.validate(digits))
    except ValidationError:
        return False
    return False


def is_canonical_tax_id(tax_id: str | None) -> bool:
    """True when the id is stored as the tax office writes it: ASCII digits only, nothing to compact away.

    python-stdnum's validators compact their input first (spaces, dashes, dots), so a valid id can still be
    stored with separators that 1C and the ERP would keep."""
    if not tax_id:
        return False
    return tax_id.isascii() and tax_id.isdigit()
