"""``$metadata``: the CSDL document (OData v3, EDMX 1.0) generated from the schema table.

Shaped as 1C publishes it: namespace ``StandardODATA``, container ``EnterpriseV8``, a tabular part as a
collection of ``<Set>_<Part>_RowType`` plus its own entity type keyed by (Ref_Key, LineNumber), and a
navigation property (with its association) for every reference field. Each document type has ``Post`` and
``Unpost`` function imports bound to it (``IsBindable``; ``Post`` takes ``PostingModeOperational``), as the
``$metadata`` of real bases shows (DESIGN §8); ``SelectChanges``/``NotifyChangesReceived`` are POST functions of
the container (guide §17.4.13.3). A string attribute of a fixed
length carries ``MaxLength`` (see ``schema`` for why and where the lengths come from).
"""
from __future__ import annotations

from lxml import etree as ET

from .schema import EntitySet

EDMX = "http://schemas.microsoft.com/ado/2007/06/edmx"
METADATA = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
EDM = "http://schemas.microsoft.com/ado/2009/11/edm"
NAMESPACE = "StandardODATA"
CONTAINER = "EnterpriseV8"


def _property(parent: ET.Element, name: str, edm: str, nullable: bool = True, max_length: int = 0) -> None:
    attrs = {"Name": name, "Type": edm, "Nullable": "true" if nullable else "false"}
    if max_length:
        attrs["MaxLength"] = str(max_length)
    ET.SubElement(parent, f"{{{EDM}}}Property", attrs)


def _navigation(schema_el: ET.Element, container: ET.Element, entity_type: ET.Element, source: str, nav: str,
                target: str) -> None:
    association = f"{source}_{nav}"
    ET.SubElement(entity_type, f"{{{EDM}}}NavigationProperty", {
        "Name": nav, "Relationship": f"{NAMESPACE}.{association}", "FromRole": "Begin", "ToRole": "End",
    })
    assoc = ET.SubElement(schema_el, f"{{{EDM}}}Association", {"Name": association})
    ET.SubElement(assoc, f"{{{EDM}}}End", {"Role": "Begin", "Type": f"{NAMESPACE}.{source}", "Multiplicity": "*"})
    ET.SubElement(assoc, f"{{{EDM}}}End", {"Role": "End", "Type": f"{NAMESPACE}.{target}", "Multiplicity": "0..1"})
    assoc_set = ET.SubElement(container, f"{{{EDM}}}AssociationSet", {
        "Name": association, "Association": f"{NAMESPACE}.{association}",
    })
    ET.SubElement(assoc_set, f"{{{EDM}}}End", {"Role": "Begin", "EntitySet": source})
    ET.SubElement(assoc_set, f"{{{EDM}}}End", {"Role": "End", "EntitySet": target})


def _posting_functions(container: ET.Element, document: str) -> None:
    """``Post``/``Unpost`` bound to one document type, as real metadata declares them (one pair per type)."""
    for name in ("Post", "Unpost"):
        fn = ET.SubElement(container, f"{{{EDM}}}FunctionImport", {
            "Name": name, "IsBindable": "true", "IsSideEffecting": "true", f"{{{METADATA}}}HttpMethod": "POST",
        })
        ET.SubElement(fn, f"{{{EDM}}}Parameter", {"Name": "bindingParameter", "Type": f"{NAMESPACE}.{document}"})
        if name == "Post":
            ET.SubElement(fn, f"{{{EDM}}}Parameter", {"Name": "PostingModeOperational", "Type": "Edm.Boolean"})


def build_metadata(entity_sets: dict[str, EntitySet]) -> bytes:
    """The CSDL document as UTF-8 bytes."""
    root = ET.Element(f"{{{EDMX}}}Edmx", {"Version": "1.0"}, nsmap={"edmx": EDMX})
    services = ET.SubElement(root, f"{{{EDMX}}}DataServices", {f"{{{METADATA}}}DataServiceVersion": "3.0"},
                             nsmap={"m": METADATA})
    schema_el = ET.SubElement(services, f"{{{EDM}}}Schema", {"Namespace": NAMESPACE}, nsmap={None: EDM})
    container = ET.Element(f"{{{EDM}}}EntityContainer", {"Name": CONTAINER,
                                                         f"{{{METADATA}}}IsDefaultEntityContainer": "true"})
    for entity_set in entity_sets.values():
        entity_type = ET.SubElement(schema_el, f"{{{EDM}}}EntityType", {"Name": entity_set.name})
        key = ET.SubElement(entity_type, f"{{{EDM}}}Key")
        ET.SubElement(key, f"{{{EDM}}}PropertyRef", {"Name": "Ref_Key"})
        for field in entity_set.fields.values():
            _property(entity_type, field.name, field.edm, nullable=field.name not in ("Ref_Key", "DataVersion"),
                      max_length=field.max_length)
        for part in entity_set.tabular_parts.values():
            row_type = f"{entity_set.name}_{part.name}_RowType"
            _property(entity_type, part.name, f"Collection({NAMESPACE}.{row_type})", nullable=False)
            complex_type = ET.SubElement(schema_el, f"{{{EDM}}}ComplexType", {"Name": row_type})
            row_entity = ET.SubElement(schema_el, f"{{{EDM}}}EntityType", {"Name": f"{entity_set.name}_{part.name}"})
            row_key = ET.SubElement(row_entity, f"{{{EDM}}}Key")
            ET.SubElement(row_key, f"{{{EDM}}}PropertyRef", {"Name": "Ref_Key"})
            ET.SubElement(row_key, f"{{{EDM}}}PropertyRef", {"Name": "LineNumber"})
            _property(row_entity, "Ref_Key", "Edm.Guid", nullable=False)
            for field in part.fields.values():
                _property(complex_type, field.name, field.edm, max_length=field.max_length)
                _property(row_entity, field.name, field.edm, nullable=field.name != "LineNumber",
                          max_length=field.max_length)
            ET.SubElement(container, f"{{{EDM}}}EntitySet", {
                "Name": f"{entity_set.name}_{part.name}", "EntityType": f"{NAMESPACE}.{entity_set.name}_{part.name}",
            })
        for nav, field in entity_set.references.items():
            _navigation(schema_el, container, entity_type, entity_set.name, nav, field.target)
        ET.SubElement(container, f"{{{EDM}}}EntitySet", {
            "Name": entity_set.name, "EntityType": f"{NAMESPACE}.{entity_set.name}",
        })
    for entity_set in entity_sets.values():
        if entity_set.is_document:
            _posting_functions(container, entity_set.name)
    for function in ("SelectChanges", "NotifyChangesReceived"):
        # Both are POST (guide §17.4.13.3); the node is passed as its URL, a string.
        fn = ET.SubElement(container, f"{{{EDM}}}FunctionImport", {
            "Name": function, f"{{{METADATA}}}HttpMethod": "POST",
        })
        ET.SubElement(fn, f"{{{EDM}}}Parameter", {"Name": "DataExchangePoint", "Type": "Edm.String"})
        ET.SubElement(fn, f"{{{EDM}}}Parameter", {"Name": "MessageNo", "Type": "Edm.Int64"})
    schema_el.append(container)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True, pretty_print=True)
