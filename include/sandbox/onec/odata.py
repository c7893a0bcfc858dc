"""The standard OData interface (v3, JSON) over the infobase: URLs, query options, entity JSON, change selection.

Paths are relative to the service root ``<base>/odata/standard.odata/``::

    ""                                  service document
    $metadata                           CSDL (XML)
    <Set>                               GET list (query options), POST create
    <Set>/$count                        GET, bare number
    <Set>(guid'...')                    GET, PATCH, PUT, DELETE
    <Set>(guid'...')/<Nav>              GET the referenced object
    <Set>(guid'...')/Post | /Unpost     POST (documents)
    <Document>_<Part>                   GET the rows of a tabular part; writes are code 13
    SelectChanges, NotifyChangesReceived  the exchange plan functions (see the package docstring)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from urllib.parse import quote

from ..httpbase import Response
from . import schema
from .errors import BAD_REQUEST, NOT_SUPPORTED, UNKNOWN_RESOURCE, ODataError, bad_request, not_found
from .filters import compile_filter, parse_orderby, sort_records
from .infobase import Infobase
from .metadata import build_metadata
from .schema import EXCHANGE_PLAN, EntitySet, TabularPart
from .values import EMPTY_GUID, dumps, loads, parse_guid, to_wire

JSON_CONTENT_TYPE = "application/json;odata=minimalmetadata;charset=utf-8"
_RESOURCE_RE = re.compile(r"^(?P<set>[^/()]+)(?:\((?P<key>[^)]*)\))?(?:/(?P<tail>[^/]+))?$")
_NODE_RE = re.compile(r"^(?P<plan>ExchangePlan_[^(]+)\(guid'(?P<guid>[^']+)'\)$")


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
            return e.to_response()

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
        if not request.wants_json():
            # The stand-in speaks JSON only; real 1C would answer Atom here.
            raise ODataError(406, BAD_REQUEST, "Стенд отвечает только в JSON: добавьте $format=json "
                                               "или заголовок Accept: application/json")
        if set_name == "SelectChanges" and key is None and tail is None:
            self._allow(method, "GET")
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
            return json_response(200, self._element(request, entity_set, record))
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
        select, expand = self._select_expand(request, entity_set)
        payload = {"odata.metadata": f"{request.root_url}$metadata#{entity_set.name}"}
        if total is not None:
            payload["odata.count"] = str(total)
        payload["value"] = [self.entity_json(entity_set, r, select, expand) for r in records]
        return json_response(200, payload)

    def _create(self, request: ODataRequest, entity_set: EntitySet) -> Response:
        record = self.infobase.create(entity_set.name, loads(request.body))
        location = request.root_url + quote(f"{entity_set.name}(guid'{record['Ref_Key']}')", safe="()'")
        return json_response(201, self._element(request, entity_set, record), {"Location": location})

    def _entity(self, request: ODataRequest, entity_set: EntitySet, ref_key: str) -> Response:
        method, if_match = request.method, request.headers.get("If-Match")
        if method == "GET":
            return json_response(200, self._element(request, entity_set,
                                                    self.infobase.require(entity_set.name, ref_key)))
        if method in ("PATCH", "PUT"):
            record = self.infobase.update(entity_set.name, ref_key, loads(request.body), if_match=if_match,
                                          replace=method == "PUT")
            return json_response(200, self._element(request, entity_set, record))
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
        return json_response(200, self._element(request, target_set, target))

    def _tabular_part(self, request: ODataRequest, name: str, key: str | None, tail: str | None) -> Response:
        if request.method != "GET" or key is not None or tail is not None:
            verb = "Создание" if request.method == "POST" else "Изменение или чтение по ключу"
            raise ODataError(400, NOT_SUPPORTED, f"{verb} строк табличной части напрямую не поддерживается: {name}")
        records, total = self._query_records(request, name)
        fields = self._fields(name)
        select = self._select(request, list(fields))
        payload = {"odata.metadata": f"{request.root_url}$metadata#{name}"}
        if total is not None:
            payload["odata.count"] = str(total)
        payload["value"] = [{n: to_wire(fields[n], r[n]) for n in fields if select is None or n in select}
                            for r in records]
        return json_response(200, payload)

    # exchange plan functions
    def _exchange_node(self, request: ODataRequest) -> tuple[dict, int]:
        point = request.option("DataExchangePoint")
        message_no = (request.option("MessageNo") or "").strip().strip("'")
        if not point:
            raise bad_request("Не указан параметр DataExchangePoint")
        if not message_no.isdigit():
            raise bad_request(f"Параметр MessageNo должен быть неотрицательным целым, а не {message_no!r}")
        match = _NODE_RE.match(point.strip())
        if match:
            if match["plan"] != EXCHANGE_PLAN:
                raise ODataError(404, UNKNOWN_RESOURCE, f"Неизвестный план обмена {match['plan']}")
            node = self.infobase.require(EXCHANGE_PLAN, self._parse_key(f"guid'{match['guid']}'"))
        else:
            node = self.infobase.node_by_code(point.strip().strip("'"))
        return node, int(message_no)

    def _select_changes(self, request: ODataRequest) -> Response:
        node, message_no = self._exchange_node(request)
        changes = self.infobase.select_changes(node, message_no)
        value = []
        for change, record in changes:
            entity_set = self.infobase.entity_set(change.entity_set)
            value.append({
                "EntitySet": change.entity_set, "Ref_Key": change.ref_key,
                "DataVersion": record["DataVersion"] if record else change.data_version,
                "DeletionMark": record["DeletionMark"] if record else change.deletion_mark,
                "Deleted": record is None, "MessageNo": str(change.message_no),
                "Object": self.entity_json(entity_set, record) if record else None,
            })
        return json_response(200, {
            "odata.metadata": f"{request.root_url}$metadata#SelectChanges",
            "DataExchangePoint": node["Code"], "MessageNo": str(message_no), "value": value,
        })

    def _notify_changes_received(self, request: ODataRequest) -> Response:
        node, message_no = self._exchange_node(request)
        removed, remaining = self.infobase.notify_changes_received(node, message_no)
        return json_response(200, {"DataExchangePoint": node["Code"], "MessageNo": str(message_no),
                                   "Removed": str(removed), "Remaining": str(remaining)})

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

    def _query_records(self, request: ODataRequest, name: str) -> tuple[list[dict], int | None]:
        """Apply $filter, $orderby, $skip then $top; the total is for $inlinecount=allpages, else None."""
        fields = self._fields(name)
        records = self._records(name)
        if request.option("$filter"):
            predicate = compile_filter(request.option("$filter"), fields)
            records = [r for r in records if predicate(r)]
        inline = request.option("$inlinecount")
        if inline not in (None, "none", "allpages"):
            raise bad_request(f"Неверное значение $inlinecount: {inline}")
        total = len(records) if inline == "allpages" else None
        if request.option("$orderby"):
            records = sort_records(records, parse_orderby(request.option("$orderby"), fields), fields)
        skip, top = self._count_option(request, "$skip"), self._count_option(request, "$top")
        records = records[skip or 0:]
        if top is not None:
            records = records[:top]
        return records, total

    @staticmethod
    def _count_option(request: ODataRequest, name: str) -> int | None:
        raw = request.option(name)
        if raw is None:
            return None
        if not raw.strip().isdigit():
            raise bad_request(f"{name} должен быть неотрицательным целым, а не {raw!r}")
        return int(raw)

    @staticmethod
    def _select(request: ODataRequest, allowed: list[str]) -> set[str] | None:
        raw = request.option("$select")
        if not raw or raw.strip() == "*":
            return None
        names = {n.strip() for n in raw.split(",") if n.strip()}
        unknown = names - set(allowed)
        if unknown:
            raise ODataError(400, UNKNOWN_RESOURCE, f"Неизвестные свойства в $select: {', '.join(sorted(unknown))}")
        return names

    def _select_expand(self, request: ODataRequest, entity_set: EntitySet) -> tuple[set[str] | None, list[str]]:
        allowed = list(entity_set.fields) + list(entity_set.tabular_parts) + list(entity_set.references)
        select = self._select(request, allowed)
        expand = [n.strip() for n in (request.option("$expand") or "").split(",") if n.strip()]
        for nav in expand:
            if nav not in entity_set.references:
                raise ODataError(400, UNKNOWN_RESOURCE, f"$expand: у {entity_set.name} нет навигационного "
                                                        f"свойства {nav} (вложенные пути не поддерживаются)")
        return select, expand

    def _element(self, request: ODataRequest, entity_set: EntitySet, record: dict) -> dict:
        select, expand = self._select_expand(request, entity_set)
        body = {"odata.metadata": f"{request.root_url}$metadata#{entity_set.name}/@Element"}
        body.update(self.entity_json(entity_set, record, select, expand))
        return body

    @staticmethod
    def _parse_key(key: str) -> str:
        match = re.fullmatch(r"guid'([^']*)'", key.strip())
        try:
            if not match:
                raise ValueError(f"ожидался ключ вида guid'...', а не {key!r}")
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
                    expand: list[str] = (), nav_links: bool = True) -> dict:
        """An object as 1C writes it: fields, tabular parts (rows carry Ref_Key), navigation links, expansions."""
        out = {}
        for name, field in entity_set.fields.items():
            if select is None or name in select:
                out[name] = to_wire(field.edm, record[name])
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
