"""Which integrator carries which invoice: the routing file beside the exchange map (``einvoice_routing.yaml``).

Per series (one per document kind: e-Fatura or e-Arşiv, SATIS or IADE) a primary integrator and an optional
fallback, each of which must be allowed to issue that series; per integrator its Airflow connection and pool.
A bad entry is refused when the file loads, naming the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml

from ledgerlink.einvoice.codes import EARSIV, EFATURA, PROFILES, TYPE_CODES
from ledgerlink.errors import ConfigurationError
from ledgerlink.taxids import is_valid_tax_id

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "einvoice_routing.yaml"
PROTOCOLS = ("rest", "soap")
SERIES = re.compile(r"^[A-Z0-9]{3}$")


class RoutingError(ConfigurationError):
    def __init__(self, key: str, problem: str):
        super().__init__(f"e-invoice routing: {key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class Integrator:
    name: str
    connection: str
    protocol: str
    pool: str
    pool_slots: int
    may_issue: frozenset[str]


@dataclass(frozen=True)
class Series:
    code: str
    document: str  # efatura / earsiv
    type_code: str  # SATIS / IADE
    profile: str
    primary: str
    fallback: str | None

    @property
    def route(self) -> tuple[str, ...]:
        """The integrators in the order they may carry an invoice of this series."""
        return (self.primary,) + ((self.fallback,) if self.fallback else ())


@dataclass(frozen=True)
class Routing:
    supplier: "Party"  # noqa: F821 - ledgerlink.einvoice.document.Party
    issued_from: date
    user_list: str
    integrators: dict[str, Integrator]
    series: dict[str, Series]

    def series_for(self, document: str, type_code: str) -> Series:
        for series in self.series.values():
            if series.document == document and series.type_code == type_code:
                return series
        raise RoutingError("series", f"no series for {document} {type_code}")


def _need(raw: dict, key: str, where: str):
    if raw.get(key) in (None, ""):
        raise RoutingError(f"{where}.{key}", "missing")
    return raw[key]


def parse_routing(document: dict) -> Routing:
    if not isinstance(document, dict):
        raise RoutingError("<root>", "must be a mapping")
    raw_supplier = _need(document, "supplier", "<root>")
    from ledgerlink.einvoice.document import Party  # lxml: only when the routing is used, not when a DAG parses

    supplier = Party(tax_id=str(_need(raw_supplier, "tax_id", "supplier")),
                     name=_need(raw_supplier, "name", "supplier"),
                     street=_need(raw_supplier, "street", "supplier"), city=_need(raw_supplier, "city", "supplier"),
                     tax_office=raw_supplier.get("tax_office", ""))
    if not is_valid_tax_id("TR", supplier.tax_id) or not supplier.tax_id.isdigit():
        raise RoutingError("supplier.tax_id", f"{supplier.tax_id!r} is not a VKN/TCKN with valid check digits")
    try:
        issued_from = date.fromisoformat(str(_need(document, "issued_from", "<root>")))
    except ValueError as e:
        raise RoutingError("issued_from", f"not a date (YYYY-MM-DD): {e}") from e
    integrators = {}
    for name, raw in (_need(document, "integrators", "<root>") or {}).items():
        where = f"integrators.{name}"
        protocol = _need(raw, "protocol", where)
        if protocol not in PROTOCOLS:
            raise RoutingError(f"{where}.protocol", f"{protocol!r} is not one of {PROTOCOLS}")
        integrators[name] = Integrator(name=name, connection=_need(raw, "connection", where), protocol=protocol,
                                       pool=raw.get("pool", name), pool_slots=int(raw.get("pool_slots", 1)),
                                       may_issue=frozenset(_need(raw, "may_issue", where)))
    series = {}
    for code, raw in (_need(document, "series", "<root>") or {}).items():
        where = f"series.{code}"
        if not SERIES.match(str(code)):
            raise RoutingError(where, "a series is three capital letters or digits")
        kind, type_code, profile = (_need(raw, k, where) for k in ("document", "type", "profile"))
        if kind not in (EFATURA, EARSIV):
            raise RoutingError(f"{where}.document", f"{kind!r} is not {EFATURA} or {EARSIV}")
        if type_code not in TYPE_CODES:
            raise RoutingError(f"{where}.type", f"{type_code!r} is not one of {TYPE_CODES}")
        if profile not in PROFILES[kind]:
            raise RoutingError(f"{where}.profile", f"{profile!r} is not a profile of {kind}: {PROFILES[kind]}")
        primary, fallback = _need(raw, "primary", where), raw.get("fallback")
        for role, name in (("primary", primary), ("fallback", fallback)):
            if name is None:
                continue
            if name not in integrators:
                raise RoutingError(f"{where}.{role}", f"unknown integrator {name!r}; known: {sorted(integrators)}")
            if code not in integrators[name].may_issue:
                raise RoutingError(f"{where}.{role}", f"{name} may not issue series {code} "
                                                      f"(it may issue {sorted(integrators[name].may_issue)})")
        if fallback == primary:
            raise RoutingError(f"{where}.fallback", "the fallback must be another integrator than the primary")
        if any(s.document == kind and s.type_code == type_code for s in series.values()):
            raise RoutingError(where, f"a second series for {kind} {type_code}: numbering would be ambiguous")
        series[code] = Series(code, kind, type_code, profile, primary, fallback)
    user_list = _need(document, "user_list", "<root>")
    if user_list not in integrators or integrators[user_list].protocol != "rest":
        raise RoutingError("user_list", f"{user_list!r} is not a REST integrator of this file (the REST API serves "
                                        "GİB's user list)")
    for kind in (EFATURA, EARSIV):
        for type_code in TYPE_CODES:
            if not any(s.document == kind and s.type_code == type_code for s in series.values()):
                raise RoutingError("series", f"no series for {kind} {type_code}")
    return Routing(supplier, issued_from, user_list, integrators, series)


def load_routing(path: Path | str | None = None) -> Routing:
    path = Path(path or DEFAULT_PATH)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RoutingError(str(path), f"not valid YAML: {e}") from e
    return parse_routing(document)
