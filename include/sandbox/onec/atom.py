"""Atom (application/atom+xml), the format 1C's standard interface answers when JSON is not asked for.

Developer guide §17.4.3 ("data presentation": atom-xml or json, by ``$format`` or ``Accept``) and OData v3's
Atom format: a collection is a ``<feed>``, an object an ``<entry>`` whose ``<m:properties>`` hold the same
values as the JSON (numbers with their exact decimal text, booleans ``true``/``false``, dates without a zone),
typed with ``m:type`` where not a string; a tabular part is a collection of ``<d:element>``; a reference has a
``related`` link (with ``<m:inline>`` when expanded). Errors are ``<m:error><m:code>..</m:code><m:message
xml:lang="ru">..</m:message></m:error>``, the shape public reports of 1C's XML errors show.

Change selection (guide §17.4.13.3) answers a feed in which a deleted object is an ``<at:deleted-entry
ref="<its URL>" when="...">`` of the Atom tombstones namespace (RFC 6721).
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from lxml import etree as ET

from .schema import EntitySet

ATOM = "http://www.w3.org/2005/Atom"
DATA = "http://schemas.microsoft.com/ado/2007/08/dataservices"
METADATA = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
TOMBSTONES = "http://purl.org/atompub/tombstones/1.0"
SCHEME = "http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"
RELATED = "http://schemas.microsoft.com/ado/2007/08/dataservices/related/"
NAMESPACE = "StandardODATA"
FEED_CONTENT_TYPE = "application/atom+xml;type=feed;charset=utf-8"
ENTRY_CONTENT_TYPE = "application/atom+xml;type=entry;charset=utf-8"
ERROR_CONTENT_TYPE = "application/xml;charset=utf-8"
_NSMAP = {None: ATOM, "d": DATA, "m": METADATA}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _property(parent: ET.Element, name: str, edm: str, value) -> None:
    element = ET.SubElement(parent, f"{{{DATA}}}{name}")
    if edm != "Edm.String":
        element.set(f"{{{METADATA}}}type", edm)
    if value is None:
        element.set(f"{{{METADATA}}}null", "true")
    else:
        element.text = _text(value)


class AtomWriter:
    """Builds feeds and entries from an object's JSON form (``ODataService.entity_json``) and its entity set."""

    def __init__(self, root_url: str, entity_sets: dict[str, EntitySet]):
        self.root_url = root_url
        self.entity_sets = entity_sets

    def entry(self, entity_set: EntitySet, body: dict, parent: ET.Element | None = None) -> ET.Element:
        key = f"{entity_set.name}(guid'{body.get('Ref_Key', '')}')"
        entry = ET.Element(f"{{{ATOM}}}entry", nsmap=_NSMAP) if parent is None else \
            ET.SubElement(parent, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = self.root_url + key
        ET.SubElement(entry, f"{{{ATOM}}}category", {"term": f"{NAMESPACE}.{entity_set.name}", "scheme": SCHEME})
        ET.SubElement(entry, f"{{{ATOM}}}title", {"type": "text"})
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = _now()
        ET.SubElement(ET.SubElement(entry, f"{{{ATOM}}}author"), f"{{{ATOM}}}name")
        ET.SubElement(entry, f"{{{ATOM}}}link", {"rel": "edit", "href": key, "title": entity_set.name})
        for nav, field in entity_set.references.items():
            if f"{nav}@navigationLinkUrl" not in body and nav not in body:
                continue
            link = ET.SubElement(entry, f"{{{ATOM}}}link", {
                "rel": RELATED + nav, "type": "application/atom+xml;type=entry", "title": nav, "href": f"{key}/{nav}",
            })
            if nav in body:  # $expand: the referenced object inline
                inline = ET.SubElement(link, f"{{{METADATA}}}inline")
                if body[nav] is not None:
                    self.entry(self.entity_sets[field.target], body[nav], inline)
        content = ET.SubElement(entry, f"{{{ATOM}}}content", {"type": "application/xml"})
        properties = ET.SubElement(content, f"{{{METADATA}}}properties")
        for name, value in body.items():
            if "@" in name or name in entity_set.references:
                continue
            if name in entity_set.fields:
                _property(properties, name, entity_set.fields[name].edm, value)
            elif name in entity_set.tabular_parts:
                part = entity_set.tabular_parts[name]
                row_type = f"{NAMESPACE}.{entity_set.name}_{name}_RowType"
                collection = ET.SubElement(properties, f"{{{DATA}}}{name}",
                                           {f"{{{METADATA}}}type": f"Collection({row_type})"})
                for row in value:
                    element = ET.SubElement(collection, f"{{{DATA}}}element", {f"{{{METADATA}}}type": row_type})
                    for column, cell in row.items():
                        edm = "Edm.Guid" if column == "Ref_Key" else part.fields[column].edm
                        _property(element, column, edm, cell)
            else:  # e.g. <Ref>_Presentation
                _property(properties, name, "Edm.String", value)
        return entry

    def rows_entry(self, name: str, fields: dict[str, str], row: dict, parent: ET.Element) -> None:
        """A row of ``Document_X_Part`` as its own entry (keyed by Ref_Key and LineNumber)."""
        key = f"{name}(Ref_Key=guid'{row['Ref_Key']}', LineNumber={row.get('LineNumber', '')})"
        entry = ET.SubElement(parent, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = self.root_url + key
        ET.SubElement(entry, f"{{{ATOM}}}category", {"term": f"{NAMESPACE}.{name}", "scheme": SCHEME})
        ET.SubElement(entry, f"{{{ATOM}}}title", {"type": "text"})
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = _now()
        properties = ET.SubElement(ET.SubElement(entry, f"{{{ATOM}}}content", {"type": "application/xml"}),
                                   f"{{{METADATA}}}properties")
        for column, cell in row.items():
            _property(properties, column, fields[column], cell)

    def feed(self, name: str, count: int | None = None, *, tombstones: bool = False) -> ET.Element:
        nsmap = {**_NSMAP, "at": TOMBSTONES} if tombstones else _NSMAP
        feed = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}base": self.root_url},
                          nsmap=nsmap)
        ET.SubElement(feed, f"{{{ATOM}}}id").text = self.root_url + name
        ET.SubElement(feed, f"{{{ATOM}}}title", {"type": "text"}).text = name
        ET.SubElement(feed, f"{{{ATOM}}}updated").text = _now()
        ET.SubElement(ET.SubElement(feed, f"{{{ATOM}}}author"), f"{{{ATOM}}}name")
        ET.SubElement(feed, f"{{{ATOM}}}link", {"rel": "self", "href": name, "title": name})
        if count is not None:
            ET.SubElement(feed, f"{{{METADATA}}}count").text = str(count)
        return feed

    def deleted_entry(self, feed: ET.Element, entity_set: str, ref_key: str) -> None:
        ET.SubElement(feed, f"{{{TOMBSTONES}}}deleted-entry", {
            "ref": self.root_url + f"{entity_set}(guid'{ref_key}')", "when": _now(),
        })

    @staticmethod
    def serialize(element: ET.Element) -> bytes:
        return ET.tostring(element, encoding="utf-8", xml_declaration=True)


def error_document(code: str, message: str) -> bytes:
    error = ET.Element(f"{{{METADATA}}}error", nsmap={"m": METADATA})
    ET.SubElement(error, f"{{{METADATA}}}code").text = code
    ET.SubElement(error, f"{{{METADATA}}}message", {"{http://www.w3.org/XML/1998/namespace}lang": "ru"}).text = message
    return ET.tostring(error, encoding="utf-8", xml_declaration=True)
