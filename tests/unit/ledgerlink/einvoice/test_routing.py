"""The routing file beside the exchange map: the shipped one loads; a bad entry is refused naming its key."""
from __future__ import annotations

import copy

import pytest
import yaml

from ledgerlink.einvoice.routing import DEFAULT_PATH, RoutingError, load_routing, parse_routing

SHIPPED = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def test_the_shipped_routing_names_a_primary_and_fallback_per_series_each_allowed_to_issue_it():
    routing = load_routing()
    assert routing.series_for("efatura", "SATIS").route == ("einvoice_rest", "einvoice_soap")
    assert routing.series_for("earsiv", "SATIS").route == ("einvoice_soap", "einvoice_rest")
    for series in routing.series.values():
        assert all(series.code in routing.integrators[name].may_issue for name in series.route)
    assert {i.pool for i in routing.integrators.values()} == {"einvoice_rest", "einvoice_soap"}


@pytest.mark.parametrize("change, key", [
    (lambda d: d["integrators"]["einvoice_soap"].update(may_issue=["EFA"]), "series.EIA.fallback"),
    (lambda d: d["series"]["EFA"].update(fallback="einvoice_xml"), "series.EFA.fallback"),
    (lambda d: d["series"]["EFA"].update(fallback="einvoice_rest"), "series.EFA.fallback"),
    (lambda d: d["series"]["EFA"].update(profile="EARSIVFATURA"), "series.EFA.profile"),
    (lambda d: d["series"].pop("ARI"), "series"),
    (lambda d: (d["series"].update(EF1={**d["series"]["EFA"]}),
                [i["may_issue"].append("EF1") for i in d["integrators"].values()]), "series.EF1"),
    (lambda d: d["supplier"].update(tax_id="1234567891"), "supplier.tax_id"),
    (lambda d: d.update(user_list="einvoice_soap"), "user_list"),
    (lambda d: d.update(issued_from="yesterday"), "issued_from"),
])
def test_a_bad_entry_is_refused_naming_its_key(change, key):
    document = copy.deepcopy(SHIPPED)
    change(document)
    with pytest.raises(RoutingError) as error:
        parse_routing(document)
    assert error.value.key == key and key in str(error.value)
