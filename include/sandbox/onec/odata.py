"""The standard OData interface (v3, Atom or JSON) over the infobase: URLs, query options, entities, change selection.

Paths are relative to the service root ``<base>/odata/standard.odata/``::

    ""                                  service document
    $metadata                           CSDL (XML)
    <Set>                               GET list (query options), POST create
    <Set>/$count                        GET, bare number
    <Set>(guid'...')                    GET, PATCH, PUT, DELETE; the key may be named: (Ref_Key=guid'...')
    <Set>(guid'...')/<Nav>              GET the referenced object
    <Set>(guid'...')/Post | /Unpost     POST (documents)
    <Document>_<Part>                   GET the rows of a tabular part; writes are code 13
    SelectChanges, NotifyChangesReceived  the exchange plan functions, POST (see the package docstring)

Format (guide §17.4.3): JSON when ``$format=json`` or ``Accept: application/json``, Atom otherwise (``atom``).
Query options (guide §17.4.6): ``$inlinecount=allpages`` answers every matching row with the count and ignores
``$top`` and ``$skip`` (§17.4.6.2, "использование параметра $inlinecount приводит к игнорированию параметров
$skip и $top"); ``$select`` may name ``<Reference>_Presentation`` (§17.4.3, the ``_Presentation`` suffix: the
referenced object's presentation, its Description for a catalog, "<kind> <Number> от <Date>" for a document),
and ``$select=**`` answers every property plus the presentation of every reference (the stand-in's reading of
the double star; not checked against a real base). ``$filter``/``$orderby`` take navigation paths
(``Контрагент/ИНН``) and the functions in ``filters``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from urllib.parse import quote

from ..httpbase import Response
from . import schema
from .atom import ENTRY_CONTENT_TYPE, ERROR_CONTENT_TYPE, FEED_CONTENT_TYPE, AtomWriter, error_document
from .errors import NOT_SUPPORTED, UNKNOWN_RESOURCE, ODataError, bad_request, not_found
from .filters import Resolver, compile_filter, parse_orderby, sort_records
from .infobase import Infobase
from .metadata import build_metadata
from .schema import EXCHANGE_PLAN, EntitySet, Field, TabularPart
from .values import EMPTY_GUID, dumps, loads, parse_guid, to_wire

JSON_CONTENT_TYPE = "application/json;odata=minimalmetadata;charset=utf-8"
PRESENTATION = "_Presentation"
ALL_WITH_PRESENTATIONS = "**"
_RESOURCE_RE = re.compile(r"^(?P<set>[^/()]+)(?:\((?P<key>[^)]*)\))?(?:/(?P<tail>[^/]+))?$")
# The node as guide §17.4.13.3 names it: its canonical URL, absolute or relative to the service root.
_NODE_RE = re.compile(r"(?:^|/)(?P<plan>ExchangePlan_[^/(]+)\(guid'(?P<guid>[^']+)'\)$")
_NAMED_KEY_RE = re.compile(r"^\s*Ref_Key\s*=\s*guid'(?P<guid>[^']*)'\s*$")


@dataclass
class ODataRequest:
    method: str
    path: str  # decoded, relative to the service root, no leading slash
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    root_url: str  # absolute service root ending in "/"

    def option(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def wants_json(self) -> bool:
        fmt = (self.option("$format") or "").lower()
        if fmt:
            return fmt == "json" or fmt.startswith("application/json")
        return "application/json" in (self.headers.get("Accept") or "").lower()


def json_response(status: int, payload, headers: dict[str, str] | None = None) -> Response:
    return Response(status, dumps(payload).encode("utf-8"), {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})})


def error_response(error: ODataError, wants_json: bool) -> Response:
    """The error in the format the request asked for: JSON ``odata.error`` or XML ``m:error``."""
    if wants_json:
        return error.to_response()
    return Response(error.status, error_document(error.code, error.message), {"Content-Type": ERROR_CONTENT_TYPE})


class ODataService:
    """Answers OData requests; every failure becomes an ``odata.error`` response."""

    def __init__(self, infobase: Infobase):
        self.infobase = infobase
        self.metadata = build_metadata(infobase.entity_sets)
        self.row_sets: dict[str, tuple[EntitySet, TabularPart]] = {
            f"{es.name}_{part.name}": (es, part)
            for es in infobase.entity_sets.values() for part in es.tabular_parts.values()
        }

    def handle(self, request: ODataRequest) -> Response:
        try:
            # One request, one transaction: a reader never sees half of a concurrent write.
            with self.infobase.store.transaction():
                return self._dispatch(request)
        except ODataError as e:
            return error_response(e, request.wants_json())

    def _dispatch(self, request: ODataRequest) -> Response:
        path, method = request.path.strip("/"), request.method
        if path == "$metadata":
            self._allow(method, "GET")
            return Response(200, self.metadata, {"Content-Type": "application/xml;charset=utf-8"})
        if path == "":
            self._allow(method, "GET")
            return self._service_document(request)
        match = _RESOURCE_RE.match(path)
        if not match:
            raise ODataError(404, UNKNOWN_RESOURCE, f"Неверный адрес ресурса: {path}")
        set_name, key, tail = match["set"], match["key"], match["tail"]
        if tail == "$count" and key is None:
            self._allow(method, "GET")
            return Response(200, str(len(self._query_records(request, set_name)[0])).encode(),
                            {"Content-Type": "text/plain;charset=utf-8"})
        if set_name == "SelectChanges" and key is None and tail is None:
            self._allow(method, "POST")
            return self._select_changes(request)
        if set_name == "NotifyChangesReceived" and key is None and tail is None:
            self._allow(method, "POST")
            return self._notify_changes_received(request)
        if set_name in self.row_sets:
            return self._tabular_part(request, set_name, key, tail)
        entity_set = self.infobase.entity_set(set_name)
        if key is None:
            if tail is not None:
                raise ODataError(404, UNKNOWN_RESOURCE, f"Неверный адрес ресурса: {path}")
            if method == "GET":
                return self._collection(request, entity_set)
            self._allow(method, "POST")
            return self._create(request, entity_set)
        ref_key = self._parse_key(key)
        if tail is None:
            return self._entity(request, entity_set, ref_key)
        if tail in ("Post", "Unpost"):
            self._allow(method, "POST")
            action = self.infobase.post if tail == "Post" else self.infobase.unpost
            record = action(set_name, ref_key)
            return self._one(request, entity_set, record)
        if tail in entity_set.references:
            self._allow(method, "GET")
            return self._navigate(request, entity_set, ref_key, tail)
        raise ODataError(404, UNKNOWN_RESOURCE, f"Неизвестное свойство или действие {tail} у {set_name}")

    # resources
    def _service_document(self, request: ODataRequest) -> Response:
        names = list(self.infobase.entity_sets) + list(self.row_sets)
        if request.wants_json():
            return json_response(200, {"odata.metadata": request.root_url + "$metadata",
                                       "value": [{"name": n, "url": n} for n in names]})
        collections = "".join(f'<collection href="{n}"><atom:title>{n}</atom:title></collection>' for n in names)
        body = ('<?xml version="1.0" encoding="UTF-8"?><service xmlns="http://www.w3.org/2007/app" '
                f'xmlns:atom="http://www.w3.org/2005/Atom" xml:base="{request.root_url}"><workspace>'
                f"<atom:title>Default</atom:title>{collections}</workspace></service>")
        return Response(200, body.encode("utf-8"), {"Content-Type": "application/atomsvc+xml;charset=utf-8"})

    def _collection(self, request: ODataRequest, entity_set: EntitySet) -> Response:
        records, total = self._query_records(request, entity_set.name)
        select, presentations, expand = self._select_expand(request, entity_set)
        bodies = [self.entity_json(entity_set, r, select, expand, presentations=presentations) for r in records]
        if not request.wants_json():
            writer = AtomWriter(request.root_url, self.infobase.entity_sets)
            feed = writer.feed(entity_set.name, total)
            for body in bodies:
                writer.entry(entity_set, body, feed)
            return Response(200, writer.serialize(feed), {"Content-Type": FEED_CONTENT_TYPE})
        payload = {"odata.metadata": f"{request.root_url}$metadata#{entity_set.name}"}
        if total is not None:
            payload["odata.count"] = str(total)
        payload["value"] = bodies
        return json_response(200, payload)

    def _one(self, request: ODataRequest, entity_set: EntitySet, record: dict, status: int = 200,
             headers: dict[str, str] | None = None) -> Response:
        """One object as an Atom entry or a JSON element, whichever the request asked for."""
        body = self._element(request, entity_set, record)
        if request.wants_json():
            return json_response(status, body, headers)
        body.pop("odata.metadata")
        writer = AtomWriter(request.root_url, self.infobase.entity_sets)
        return Response(status, writer.serialize(writer.entry(entity_set, body)),
                        {"Content-Type": ENTRY_CONTENT_TYPE, **(headers or {})})

    def _create(self, request: ODataRequest, entity_set: EntitySet) -> Response:
        record = self.infobase.create(entity_set.name, loads(request.body))
        location = request.root_url + quote(f"{entity_set.name}(guid'{record['Ref_Key']}')", safe="()'")
        return self._one(request, entity_set, record, 201, {"Location": location})

    def _entity(self, request: ODataRequest, entity_set: EntitySet, ref_key: str) -> Response:
        method, if_match = request.method, request.headers.get("If-Match")
        if method == "GET":
            return self._one(request, entity_set, self.infobase.require(entity_set.name, ref_key))
        if method in ("PATCH", "PUT"):
            record = self.infobase.update(entity_set.name, ref_key, loads(request.body), if_match=if_match,
                                          replace=method == "PUT")
            return self._one(request, entity_set, record)
        if method == "DELETE":
            self.infobase.delete(entity_set.name, ref_key, if_match=if_match)
            return Response(204)
        raise self._not_allowed(method)

    def _navigate(self, request: ODataRequest, entity_set: EntitySet, ref_key: str, nav: str) -> Response:
        record = self.infobase.require(entity_set.name, ref_key)
        field = entity_set.references[nav]
        target_set = self.infobase.entity_set(field.target)
        target = self.infobase.get(field.target, record[field.name])
        if target is None:
            raise not_found(field.target, record[field.name])
        return self._one(request, target_set, target)

    def _tabular_part(self, request: ODataRequest, name: str, key: str | None, tail: str | None) -> Response:
        if request.method != "GET" or key is not None or tail is not None:
            verb = "Создание" if request.method == "POST" else "Изменение или чтение по ключу"
            raise ODataError(400, NOT_SUPPORTED, f"{verb} строк табличной части напрямую не поддерживается: {name}")
        records, total = self._query_records(request, name)
        fields = self._fields(name)
        select, _ = self._select(request, list(fields))
        rows = [{n: to_wire(fields[n], r[n]) for n in fields if select is None or n in select} for r in records]
        if not request.wants_json():
            writer = AtomWriter(request.root_url, self.infobase.entity_sets)
            feed = writer.feed(name, total)
            for row in rows:
                writer.rows_entry(name, fields, row, feed)
            return Response(200, writer.serialize(feed), {"Content-Type": FEED_CONTENT_TYPE})
        payload = {"odata.metadata": f"{request.root_url}$metadata#{name}"}
        if total is not None:
            payload["odata.count"] = str(total)
        payload["value"] = rows
        return json_response(200, payload)

    # exchange plan functions (guide §17.4.13.3)
    def _exchange_node(self, request: ODataRequest) -> tuple[dict, int]:
        """The node named by ``DataExchangePoint`` (its canonical URL as an OData string literal) and MessageNo."""
        point = (request.option("DataExchangePoint") or "").strip()
        message_no = (request.option("MessageNo") or "").strip()
        if not point:
            raise bad_request("Не указан параметр DataExchangePoint")
        if not message_no.isdigit():
            raise bad_request(f"Параметр MessageNo должен быть неотрицательным целым, а не {message_no!r}")
        if len(point) >= 2 and point[0] == point[-1] == "'":
            point = point[1:-1].replace("''", "'")  # an OData string literal doubles its inner quotes
        match = _NODE_RE.search(point)
        if not match:
            raise bad_request("DataExchangePoint должен быть адресом узла плана обмена, например "
                              f"'{request.root_url}{EXCHANGE_PLAN}(guid''...'')', а не {point!r}")
        if match["plan"] != EXCHANGE_PLAN:
            raise ODataError(404, UNKNOWN_RESOURCE, f"Не найден ресурс {match['plan']}")
        node = self.infobase.require(EXCHANGE_PLAN, self._parse_key(f"guid'{match['guid']}'"))
        return node, int(message_no)

    def _select_changes(self, request: ODataRequest) -> Response:
        """Stamp the node's new changes with MessageNo; answer all its registered changes as an Atom feed.

        A changed object is an entry as GET answers it; a deleted one an ``at:deleted-entry`` (guide
        §17.4.13.3). The guide shows this answer in Atom only, so it is Atom whatever format is asked.
        """
        node, message_no = self._exchange_node(request)
        writer = AtomWriter(request.root_url, self.infobase.entity_sets)
        feed = writer.feed("SelectChanges", tombstones=True)
        for change, record in self.infobase.select_changes(node, message_no):
            if record is None:
                writer.deleted_entry(feed, change.entity_set, change.ref_key)
            else:
                entity_set = self.infobase.entity_set(change.entity_set)
                writer.entry(entity_set, self.entity_json(entity_set, record), feed)
        return Response(200, writer.serialize(feed), {"Content-Type": FEED_CONTENT_TYPE})

    def _notify_changes_received(self, request: ODataRequest) -> Response:
        """Forget the node's changes stamped up to MessageNo; nothing to answer but success."""
        node, message_no = self._exchange_node(request)
        self.infobase.notify_changes_received(node, message_no)
        return Response(204)

    # query options
    def _fields(self, name: str) -> dict[str, str]:
        if name in self.row_sets:
            return {"Ref_Key": schema.GUID, **{n: f.edm for n, f in self.row_sets[name][1].fields.items()}}
        return {n: f.edm for n, f in self.infobase.entity_set(name).fields.items()}

    def _records(self, name: str) -> list[dict]:
        if name in self.row_sets:
            entity_set, part = self.row_sets[name]
            return [{"Ref_Key": doc["Ref_Key"], **row}
                    for doc in self.infobase.all(entity_set.name) for row in doc.get(part.name, [])]
        return self.infobase.all(name)

    def _references(self, name: str) -> dict[str, Field]:
        """Reference fields by navigation property, of an entity set or of a tabular part's rows."""
        if name in self.row_sets:
            return {f.navigation: f for f in self.row_sets[name][1].fields.values() if f.target}
        return self.infobase.entity_set(name).references

    def _resolver(self, name: str) -> Resolver:
        """Resolve ``Prop`` or ``Nav/…/Prop`` paths for $filter and $orderby (one lookup per referenced object)."""
        fields, cache = self._fields(name), {}

        def lookup(target: str, ref_key) -> dict | None:
            if not ref_key or ref_key == EMPTY_GUID:
                return None
            if (target, ref_key) not in cache:
                cache[target, ref_key] = self.infobase.get(target, ref_key)
            return cache[target, ref_key]

        def resolve(path: str):
            *navs, last = path.split("/")
            if not navs:
                return (fields[last], lambda record: record.get(last)) if last in fields else None
            steps, references = [], self._references(name)
            for nav in navs:
                field = references.get(nav)
                if field is None:
                    return None
                steps.append(field)
                references = self.infobase.entity_sets[field.target].references
            target_fields = self.infobase.entity_sets[steps[-1].target].fields
            if last not in target_fields:
                return None

            def getter(record):
                current = record
                for step in steps:
                    current = lookup(step.target, current.get(step.name))
                    if current is None:
                        return None  # an empty or dangling reference: its properties are null
                return current.get(last)
            return target_fields[last].edm, getter
        return resolve

    def _query_records(self, request: ODataRequest, name: str) -> tuple[list[dict], int | None]:
        """Apply $filter, $orderby, $skip then $top; with $inlinecount=allpages, all rows and their count."""
        resolve = self._resolver(name)
        records = self._records(name)
        if request.option("$filter"):
            predicate = compile_filter(request.option("$filter"), resolve)
            records = [r for r in records if predicate(r)]
        inline = request.option("$inlinecount")
        if inline not in (None, "none", "allpages"):
            raise bad_request(f"Неверное значение $inlinecount: {inline}")
        if request.option("$orderby"):
            records = sort_records(records, parse_orderby(request.option("$orderby"), resolve))
        skip, top = self._count_option(request, "$skip"), self._count_option(request, "$top")
        if inline == "allpages":
            # Guide §17.4.6.2: $inlinecount makes the base ignore $skip and $top (checked above, then dropped).
            return records, len(records)
        records = records[skip or 0:]
        if top is not None:
            records = records[:top]
        return records, None

    @staticmethod
    def _count_option(request: ODataRequest, name: str) -> int | None:
        raw = request.option(name)
        if raw is None:
            return None
        if not raw.strip().isdigit():
            raise bad_request(f"{name} должен быть неотрицательным целым, а не {raw!r}")
        return int(raw)

    @staticmethod
    def _select(request: ODataRequest, allowed: list[str],
                references: dict[str, Field] | None = None) -> tuple[set[str] | None, set[str]]:
        """(properties to answer or None for all, references whose ``_Presentation`` to add)."""
        raw = (request.option("$select") or "").strip()
        references = references or {}
        if raw == ALL_WITH_PRESENTATIONS:
            return None, set(references)
        if not raw or raw == "*":
            return None, set()
        names = {n.strip() for n in raw.split(",") if n.strip()}
        presentations = {n[: -len(PRESENTATION)] for n in names
                         if n.endswith(PRESENTATION) and n[: -len(PRESENTATION)] in references}
        unknown = names - set(allowed) - {nav + PRESENTATION for nav in presentations}
        if unknown:
            raise ODataError(400, UNKNOWN_RESOURCE, f"Неизвестные свойства в $select: {', '.join(sorted(unknown))}")
        return names, presentations

    def _select_expand(self, request: ODataRequest,
                       entity_set: EntitySet) -> tuple[set[str] | None, set[str], list[str]]:
        allowed = list(entity_set.fields) + list(entity_set.tabular_parts) + list(entity_set.references)
        # A reference's presentation is named after its navigation property, a composite's after the attribute.
        select, presentations = self._select(request, allowed, {**entity_set.references, **entity_set.composites})
        expand = [n.strip() for n in (request.option("$expand") or "").split(",") if n.strip()]
        for nav in expand:
            if nav not in entity_set.references:
                raise ODataError(400, UNKNOWN_RESOURCE, f"$expand: у {entity_set.name} нет навигационного "
                                                        f"свойства {nav} (вложенные пути не поддерживаются)")
        return select, presentations, expand

    def _element(self, request: ODataRequest, entity_set: EntitySet, record: dict) -> dict:
        select, presentations, expand = self._select_expand(request, entity_set)
        body = {"odata.metadata": f"{request.root_url}$metadata#{entity_set.name}/@Element"}
        body.update(self.entity_json(entity_set, record, select, expand, presentations=presentations))
        return body

    @staticmethod
    def _parse_key(key: str) -> str:
        """``guid'...'`` or the named form ``Ref_Key=guid'...'`` (OData allows both for a single key)."""
        match = re.fullmatch(r"guid'([^']*)'", key.strip()) or _NAMED_KEY_RE.match(key)
        try:
            if not match:
                raise ValueError(f"ожидался ключ вида guid'...' или Ref_Key=guid'...', а не {key!r}")
            return parse_guid(match[1])
        except ValueError as e:
            raise bad_request(f"Неверный ключ: {e}") from e

    @staticmethod
    def _not_allowed(method: str) -> ODataError:
        return ODataError(405, NOT_SUPPORTED, f"Метод {method} не поддерживается для этого ресурса")

    def _allow(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise self._not_allowed(method)

    # entity JSON
    def entity_json(self, entity_set: EntitySet, record: dict, select: set[str] | None = None,
                    expand: list[str] = (), nav_links: bool = True, presentations: set[str] = frozenset()) -> dict:
        """An object as 1C writes it: fields, tabular parts (rows carry Ref_Key), navigation links, expansions."""
        out = {}
        for name, field in entity_set.fields.items():
            if select is None or name in select:
                out[name] = to_wire(field.edm, record[name])
            if field.target and field.navigation in presentations:
                out[field.navigation + PRESENTATION] = self.presentation(field.target, record[name])
            elif field.types and name in presentations:
                target = record[f"{name}_Type"].removeprefix(schema.TYPE_PREFIX)
                shown = self.presentation(target, record[name]) if target in self.infobase.entity_sets else ""
                out[name + PRESENTATION] = shown
        for name, part in entity_set.tabular_parts.items():
            if select is None or name in select:
                out[name] = [{"Ref_Key": record["Ref_Key"],
                              **{n: to_wire(f.edm, row[n]) for n, f in part.fields.items()}}
                             for row in record.get(name, [])]
        for nav, field in entity_set.references.items():
            if nav_links and (select is None or field.name in select or nav in select):
                out[f"{nav}@navigationLinkUrl"] = f"{entity_set.name}(guid'{record['Ref_Key']}')/{nav}"
        for nav in expand:
            field = entity_set.references[nav]
            target = self.infobase.get(field.target, record[field.name]) if record[field.name] != EMPTY_GUID else None
            out[nav] = (self.entity_json(self.infobase.entity_set(field.target), target)
                        if target else None)
        return out

    def presentation(self, set_name: str, ref_key: str) -> str:
        """How 1C shows a reference: a catalog item by its Description, an account by its Code, a document as
        "<kind> <Number> от <Date>"."""
        target = self.infobase.get(set_name, ref_key) if ref_key and ref_key != EMPTY_GUID else None
        if target is None:
            return ""
        entity_set = self.infobase.entity_set(set_name)
        if entity_set.kind == "ChartOfAccounts":
            return target.get("Code", "")
        if not entity_set.is_document:
            return target.get("Description", "")
        date = datetime.fromisoformat(target["Date"])
        kind = set_name.split("_", 1)[1]
        return f"{kind} {target['Number']} от {date:%d.%m.%Y} {date.hour}:{date:%M:%S}"
