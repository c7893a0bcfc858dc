"""Tax identifier check digits: Turkish VKN/TCKN and Russian INN (via python-stdnum)."""
from __future__ import annotations

from stdnum.exceptions import ValidationError
from stdnum.ru import inn
from stdnum.tr import tckimlik, vkn


def is_valid_tax_id(country: str | None, tax_id: str | None) -> bool:
    """True when the id has the right length and check digits for its country."""
    if not tax_id or not country:
        return False
    try:
        if country == "TR":
            return bool(vkn.validate(tax_id)) if len(tax_id) == 10 else bool(tckimlik.validate(tax_id))
        if country == "RU":
            return bool(inn.validate(tax_id))
    except ValidationError:
        return False
    return False


def is_canonical_tax_id(country: str | None, tax_id: str | None) -> bool:
    """True when the id is stored as the tax office writes it: ASCII digits only, nothing to compact away.

    python-stdnum's validators compact their input first (spaces, dashes, dots), so a valid id can still be
    stored with separators that 1C and the ERP would keep."""
    if not tax_id:
        return False
    return tax_id.isascii() and tax_id.isdigit()
