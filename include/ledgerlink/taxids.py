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
