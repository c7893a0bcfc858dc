"""Values on the wire and at rest.

At rest (the SQLite JSON) every value is JSON-native and exact: ``Edm.Decimal`` and ``Edm.Double`` are kept as
their decimal text
("1200.50"), ``Edm.Int64`` as a string, dates as ``YYYY-MM-DDTHH:MM:SS``, guids lower-case. On the wire the
only difference is that decimals go out as JSON numbers with that same text, which ``dumps`` writes itself
because ``json`` would go through float.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation

from . import schema
from .errors import bad_request

EMPTY_GUID, EMPTY_DATE = schema.EMPTY_GUID, schema.EMPTY_DATE
DEFAULTS = schema.EMPTY_VALUES  # by Edm type; a field's own empty value is ``Field.empty``
_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?$")


def parse_guid(text: str) -> str:
    """Canonical lower-case guid; raises ``ValueError`` for anything else."""
    if not isinstance(text, str) or len(text.strip()) != 36:
        raise ValueError(f"not a guid: {text!r}")
    return str(uuid.UUID(text.strip()))


def parse_datetime(text: str) -> str:
    """``YYYY-MM-DDTHH:MM[:SS[.f]]`` without a zone (1C dates have none) -> ``YYYY-MM-DDTHH:MM:SS``."""
    if not isinstance(text, str) or not _DATETIME_RE.match(text):
        raise ValueError(f"not a 1C date (YYYY-MM-DDTHH:MM:SS, no zone): {text!r}")
    return datetime.fromisoformat(text).isoformat(timespec="seconds")


def parse_decimal(value) -> Decimal:
    """An exact decimal from a JSON number (parsed as Decimal), an int or a numeric string."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, float):
        # Only reachable when a caller parsed JSON with floats; refuse rather than keep a rounded value.
        raise ValueError(f"inexact number {value!r}: parse JSON with parse_float=Decimal")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, AttributeError) as e:
        raise ValueError(f"not a number: {value!r}") from e
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return number


def to_storage(edm: str, value, name: str):
    """Check a wire value against its Edm type and return its stored form; bad values are 400 errors."""
    try:
        if edm == schema.STRING:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {value!r}")
            return value
        if edm == schema.BOOLEAN:
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
            return value
        if edm in (schema.DECIMAL, schema.DOUBLE):
            # Edm.Double too: 1C's numbers are exact decimals published under that type name.
            return format(parse_decimal(value), "f")
        if edm == schema.INT64:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError(f"expected an integer, got {value!r}")
            return str(int(value))
        if edm == schema.DATETIME:
            return parse_datetime(value)
        if edm == schema.GUID:
            return parse_guid(value)
    except ValueError as e:
        raise bad_request(f"Неверное значение свойства {name} ({edm}): {e}") from e
    raise bad_request(f"{name}: unsupported type {edm}")


def to_wire(edm: str, stored):
    """The JSON value of a stored one (decimals become ``Decimal`` so ``dumps`` writes their exact text)."""
    return Decimal(stored) if edm in (schema.DECIMAL, schema.DOUBLE) else stored


def fit(stored, max_length: int):
    """A string cut to the attribute's length, as 1C writes a longer value: silently, no error.

    (Developer guide, "Строка": a value longer than the attribute's length is truncated on assignment.)
    """
    if max_length and isinstance(stored, str) and len(stored) > max_length:
        return stored[:max_length]
    return stored


def comparable(edm: str, stored):
    """A key to compare or sort by, as 1C's query language does: strings ignore case and trailing spaces."""
    if stored is None:
        return None
    if edm == schema.STRING:
        return stored.rstrip().casefold()
    if edm in schema.NUMBERS:
        return Decimal(stored)
    return stored


def dumps(value) -> str:
    """JSON text with ``Decimal`` written as an exact number (``1200.50`` stays ``1200.50``)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def loads(body: bytes):
    """Parse a request body keeping decimals exact."""
    try:
        return json.loads(body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad_request(f"Тело запроса не является JSON в UTF-8: {e}") from e
