"""The stand-in's object model: create, change, delete, post, and register every change for the exchange nodes.

Shared by the OData interface, the "1C user" admin edits and the file exchange, so all three write objects
the same way: defaults filled, values type-checked, a new ``DataVersion`` per write, changes registered.

What a write does, as 1C does it (developer guide ch. 17.4 and the platform's own behaviour):

* Properties the configuration does not have are ignored, on POST and on PATCH alike: no error, nothing
  stored (guide §17.4; public clients confirm real bases answer 200/201 and drop them). A client learns it
  only by reading the object back.
* A string longer than its attribute is cut to the attribute's length, silently (``values.fit``).
* ``Predefined``/``PredefinedDataName`` are the platform's: a client cannot write them.
* A catalog whose configuration checks uniqueness refuses a second object with the same ``Code``: a business
  error (HTTP 500, ``odata.error`` code ``-1``, the platform's message ``Значение поля "Код" не уникально``).
* ``If-Match`` on PATCH/PUT/DELETE is compared with ``DataVersion`` (412 on mismatch), as the guide says;
  ``honour_if_match=False`` makes the base ignore the header, as one public client reports of real bases.
* An enumeration attribute takes one of its enumeration's values or empty (``schema.ENUMERATIONS``); any other
  value is refused as a business error (HTTP 500, code ``-1``): the stand-in's reading, the real answer to an
  unknown enumeration value was not found in public sources.
* A composite attribute travels as ``<Name>`` (the object's guid, or empty) plus ``<Name>_Type``
  (``StandardODATA.<Set>`` of one of its allowed sets, or ``StandardODATA.Undefined`` when empty); a guid without
  its type, or a type the attribute does not allow, is a bad value (400).
* Posting runs the configuration's filling check (``EntitySet.required``: e.g. a sale needs Организация,
  Контрагент and ДоговорКонтрагента, and every ``Услуги`` row its Номенклатура, the message 1C writes being
  ``Поле "Организация" не заполнено``), then checks that references (plain and composite) exist and are not
  marked for deletion, and that each contract belongs to the counterparty and the organisation and is of a kind
  the document takes (``EntitySet.contract_kinds``). A failure is a business error naming every problem.
* ``SEED`` items (countries, predefined contact information kinds, currencies, units, the organisation, the
  predefined accounts) are created on first start, without registering them for exchange: they are the base's
  own, not a change anyone made.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from . import schema
from .errors import (
    BUSINESS, KEY_EXISTS, NOT_FOUND, NOT_SUPPORTED, UNKNOWN_RESOURCE, ODataError, bad_request, business, not_found,
)
from .schema import EXCHANGE_PLAN, SCHEMA, EntitySet, Field, TabularPart
from .store import Change, Store
from .values import EMPTY_DATE, EMPTY_GUID, comparable, fit, parse_guid, to_storage

READ_ONLY = {"Ref_Key", "DataVersion", "Predefined", "PredefinedDataName"}
DEFAULT_NODES = ("BILLING",)


class Infobase:
    """Objects of the published configuration, stored in ``store``."""

    def __init__(self, store: Store, entity_sets: dict[str, EntitySet] = SCHEMA,
                 node_codes: tuple[str, ...] = DEFAULT_NODES, *, honour_if_match: bool = True,
                 seed: dict[str, dict] = schema.SEED):
        self.store = store
        self.entity_sets = entity_sets
        self.honour_if_match = honour_if_match
        with store.transaction():
            existing = {node["Code"] for node in store.all(EXCHANGE_PLAN)}
            for code in node_codes:
                if code not in existing:
                    self.create(EXCHANGE_PLAN, {"Code": code, "Description": code})
            self._seed(seed)

    # lookups
    def entity_set(self, name: str) -> EntitySet:
        try:
            return self.entity_sets[name]
        except KeyError:
            raise ODataError(404, UNKNOWN_RESOURCE, f"Не найден ресурс {name}") from None

    def get(self, set_name: str, ref_key: str) -> dict | None:
        record = self.store.get(set_name, ref_key)
        return None if record is None else self._restructured(set_name, record)

    def require(self, set_name: str, ref_key: str) -> dict:
        record = self.get(set_name, ref_key)
        if record is None:
            raise not_found(set_name, ref_key)
        return record

    def all(self, set_name: str) -> list[dict]:
        self.entity_set(set_name)
        return [self._restructured(set_name, record) for record in self.store.all(set_name)]

    def _restructured(self, set_name: str, record: dict) -> dict:
        """An object stored under an older configuration, as 1C shows it after updating the configuration:
        attributes added since hold their empty values (rows of a tabular part too)."""
        entity_set = self.entity_sets.get(set_name)
        if entity_set is None:
            return record
        for name, field in entity_set.fields.items():
            record.setdefault(name, field.empty)
        for name, part in entity_set.tabular_parts.items():
            for row in record.setdefault(name, []):
                for row_field, spec in part.fields.items():
                    row.setdefault(row_field, spec.empty)
        return record

    # writes
    def create(self, set_name: str, payload: dict, *, origin: str | None = None,
               allow_posted: bool = False) -> dict:
        """A new object from wire values; a client-chosen ``Ref_Key`` is kept, a taken one is error 15."""
        entity_set = self.entity_set(set_name)
        if not isinstance(payload, dict):
            raise bad_request("Ожидался JSON-объект")
        with self.store.transaction():
            ref_key = self._ref_key(payload.get("Ref_Key")) if payload.get("Ref_Key") else str(uuid.uuid4())
            if self.store.get(set_name, ref_key) is not None:
                raise ODataError(400, KEY_EXISTS,
                                 f"Экземпляр сущности с ключом guid'{ref_key}' уже существует в {set_name}")
            record = self._defaults(entity_set)
            record["Ref_Key"] = ref_key
            self._apply(entity_set, record, payload, allow_posted=allow_posted)
            self._fill_numbering(entity_set, record)
            self._check_unique_code(entity_set, record)
            record["DataVersion"] = self.store.new_data_version()
            self.store.insert(set_name, record)
            self._register(entity_set, record, deleted=False, origin=origin)
        return record

    def update(self, set_name: str, ref_key: str, payload: dict, *, if_match: str | None = None,
               origin: str | None = None, allow_posted: bool = False, replace: bool = False) -> dict:
        """Change the fields sent (PATCH), or all of them (``replace``: PUT); a tabular part sent is replaced."""
        entity_set = self.entity_set(set_name)
        with self.store.transaction():
            record = self.require(set_name, ref_key)
            self._check_if_match(record, if_match)
            if replace:
                kept = {name: record[name] for name in ("Ref_Key", "Posted", "Code", "Number") if name in record}
                record = {**self._defaults(entity_set), **kept}
            was_marked = record["DeletionMark"]
            self._apply(entity_set, record, payload, allow_posted=allow_posted)
            if entity_set.is_document and record["DeletionMark"] and not was_marked:
                record["Posted"] = False  # 1C unposts a document when it is marked for deletion
            self._fill_numbering(entity_set, record)
            self._check_unique_code(entity_set, record)
            record["DataVersion"] = self.store.new_data_version()
            self.store.update(set_name, record)
            self._register(entity_set, record, deleted=False, origin=origin)
        return record

    def upsert(self, set_name: str, payload: dict, *, origin: str | None = None) -> dict:
        """Create or change by ``Ref_Key`` (the file exchange's way: the same object twice is one object)."""
        ref_key = self._ref_key(payload.get("Ref_Key"))
        with self.store.transaction():
            if self.store.get(set_name, ref_key) is None:
                return self.create(set_name, payload, origin=origin)
            return self.update(set_name, ref_key, payload, origin=origin)

    def delete(self, set_name: str, ref_key: str, *, if_match: str | None = None, origin: str | None = None) -> None:
        """Remove outright (1C does not check references here; marking for deletion is the safe way)."""
        entity_set = self.entity_set(set_name)
        with self.store.transaction():
            record = self.require(set_name, ref_key)
            self._check_if_match(record, if_match)
            self.store.delete(set_name, ref_key)
            self._register(entity_set, record, deleted=True, origin=origin)

    def post(self, set_name: str, ref_key: str, *, origin: str | None = None) -> dict:
        """Post a document after the checks the configuration would make; a failure is a business error."""
        entity_set = self._document_set(set_name)
        with self.store.transaction():
            record = self.require(set_name, ref_key)
            problems = self.posting_problems(entity_set, record)
            if problems:
                raise business(f"Не удалось провести документ {record['Number']}: " + "; ".join(problems))
            return self._set_posted(entity_set, record, True, origin)

    def unpost(self, set_name: str, ref_key: str, *, origin: str | None = None) -> dict:
        entity_set = self._document_set(set_name)
        with self.store.transaction():
            return self._set_posted(entity_set, self.require(set_name, ref_key), False, origin)

    def posting_problems(self, entity_set: EntitySet, record: dict) -> list[str]:
        """Why this document cannot be posted: deletion mark, the filling check, missing or deleted references,
        a contract of another counterparty or organisation or of a kind the document does not take."""
        problems = []
        if record["DeletionMark"]:
            problems.append("документ помечен на удаление")
        problems += [f'Поле "{_label(name)}" не заполнено' for name in entity_set.required
                     if _is_empty(entity_set.fields[name], record[name])]
        problems += self._reference_problems(entity_set.fields.values(), record, "")
        contracts = [record.get("ДоговорКонтрагента_Key", EMPTY_GUID)]
        for part in entity_set.tabular_parts.values():
            for row in record.get(part.name, []):
                where = f"{part.name}, строка {row['LineNumber']}: "
                problems += [f'{where}поле "{_label(name)}" не заполнено' for name in part.required
                             if _is_empty(part.fields[name], row[name])]
                problems += self._reference_problems(part.fields.values(), row, where)
                contracts.append(row.get("ДоговорКонтрагента_Key", EMPTY_GUID))
        for contract_key in dict.fromkeys(k for k in contracts if k != EMPTY_GUID):
            contract = self.store.get(schema.CONTRACTS, contract_key)
            if contract is not None:
                problems += self._contract_problems(entity_set, record, contract)
        return problems

    @staticmethod
    def _contract_problems(entity_set: EntitySet, record: dict, contract: dict) -> list[str]:
        name = contract["Description"] or contract["Номер"] or contract["Ref_Key"]
        problems = []
        if contract["Owner_Key"] != record.get("Контрагент_Key"):
            problems.append(f"договор {name} не принадлежит контрагенту")
        organisation = record.get("Организация_Key", EMPTY_GUID)
        if organisation != EMPTY_GUID and contract.get("Организация_Key", EMPTY_GUID) != organisation:
            problems.append(f"договор {name} заключен от имени другой организации")
        kind = contract.get("ВидДоговора", "")
        if entity_set.contract_kinds and kind not in entity_set.contract_kinds:
            problems.append(f"вид договора {name} ({kind or 'не указан'}) не подходит для документа: нужен "
                            + " или ".join(entity_set.contract_kinds))
        return problems

    # exchange plan
    def node_by_code(self, code: str) -> dict:
        for node in self.store.all(EXCHANGE_PLAN):
            if node["Code"] == code:
                return node
        raise ODataError(404, NOT_FOUND, f"Узел плана обмена {EXCHANGE_PLAN} с кодом {code!r} не найден")

    def select_changes(self, node: dict, message_no: int) -> list[tuple[Change, dict | None]]:
        """Stamp the node's unstamped changes with ``message_no``; return all its changes with the objects."""
        with self.store.transaction():
            self.store.stamp_changes(node["Ref_Key"], message_no)
            node = self.require(EXCHANGE_PLAN, node["Ref_Key"])
            node["SentNo"] = str(message_no)
            self._save_node(node)
            return [(change, None if change.deleted else self.get(change.entity_set, change.ref_key))
                    for change in self.store.changes(node["Ref_Key"])]

    def notify_changes_received(self, node: dict, message_no: int) -> tuple[int, int]:
        """Forget changes stamped up to ``message_no``; returns (removed, still registered)."""
        with self.store.transaction():
            removed = self.store.remove_changes(node["Ref_Key"], message_no)
            node = self.require(EXCHANGE_PLAN, node["Ref_Key"])
            node["ReceivedNo"] = str(max(int(node["ReceivedNo"]), message_no))
            self._save_node(node)
            return removed, len(self.store.changes(node["Ref_Key"]))

    def pending_changes(self, node: dict) -> list[Change]:
        return self.store.changes(node["Ref_Key"])

    def set_node_received_no(self, node: dict, message_no: int) -> None:
        """Record the last message number received from a node (file exchange)."""
        with self.store.transaction():
            node = self.require(EXCHANGE_PLAN, node["Ref_Key"])
            node["ReceivedNo"] = str(message_no)
            self._save_node(node)

    # internals
    def _save_node(self, node: dict) -> None:
        # Node bookkeeping is not an object change worth exchanging.
        node["DataVersion"] = self.store.new_data_version()
        self.store.update(EXCHANGE_PLAN, node)

    def _document_set(self, set_name: str) -> EntitySet:
        entity_set = self.entity_set(set_name)
        if not entity_set.is_document:
            raise ODataError(400, NOT_SUPPORTED, f"{set_name} не является документом: проведение невозможно")
        return entity_set

    def _set_posted(self, entity_set: EntitySet, record: dict, posted: bool, origin: str | None) -> dict:
        record["Posted"] = posted
        record["DataVersion"] = self.store.new_data_version()
        self.store.update(entity_set.name, record)
        self._register(entity_set, record, deleted=False, origin=origin)
        return record

    def _reference_problems(self, fields, record: dict, where: str) -> list[str]:
        """References, plain or composite, to objects that do not exist or are marked for deletion."""
        problems = []
        for field in fields:
            if field.target:
                target_set, value, label = field.target, record.get(field.name, EMPTY_GUID), field.navigation
            elif field.types:
                target_set = record.get(f"{field.name}_Type", "").removeprefix(schema.TYPE_PREFIX)
                value, label = record.get(field.name, ""), field.name
            else:
                continue
            if not value or value == EMPTY_GUID or target_set not in self.entity_sets:
                continue
            target = self.store.get(target_set, value)
            if target is None:
                problems.append(f"{where}{label}: объект не найден ({value})")
            elif target["DeletionMark"]:
                problems.append(f"{where}{label} помечен на удаление ({value})")
        return problems

    @staticmethod
    def _ref_key(value) -> str:
        try:
            return parse_guid(value)
        except ValueError as e:
            raise bad_request(f"Неверное значение Ref_Key: {e}") from e

    @staticmethod
    def _defaults(entity_set: EntitySet) -> dict:
        record = {name: field.empty for name, field in entity_set.fields.items()}
        record.update({name: [] for name in entity_set.tabular_parts})
        return record

    def _apply(self, entity_set: EntitySet, record: dict, payload: dict, *, allow_posted: bool) -> None:
        """Copy the known, writable properties of ``payload`` into ``record``; unknown ones are ignored, as in 1C."""
        if not isinstance(payload, dict):
            raise bad_request("Ожидался JSON-объект")
        for name, value in payload.items():
            if name in READ_ONLY or (name == "Posted" and not allow_posted):
                continue  # Posted changes only through Post/Unpost
            if name in entity_set.fields:
                record[name] = _stored(entity_set.fields[name], value, name)
            elif name in entity_set.tabular_parts:
                record[name] = self._rows(entity_set.tabular_parts[name], value)
        for name, field in entity_set.composites.items():
            _check_composite(field, record, name)

    @staticmethod
    def _rows(part: TabularPart, rows) -> list[dict]:
        """A whole tabular part; rows are renumbered 1..n in the order sent."""
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise bad_request(f"Табличная часть {part.name} должна быть массивом объектов")
        stored = []
        for number, row in enumerate(rows, start=1):
            record = {name: field.empty for name, field in part.fields.items()}
            for name, value in row.items():
                if name in part.fields and name != "LineNumber":
                    record[name] = _stored(part.fields[name], value, f"{part.name}.{name}")
            for name, field in [(n, f) for n, f in part.fields.items() if f.types]:
                _check_composite(field, record, f"{part.name}.{name}")
            record["LineNumber"] = str(number)
            stored.append(record)
        return stored

    def _fill_numbering(self, entity_set: EntitySet, record: dict) -> None:
        """Codes, numbers and dates the platform assigns when the client leaves them empty."""
        if "Code" in record and not record["Code"]:
            record["Code"] = f"{self.store.next_value('code:' + entity_set.name):09d}"
        if entity_set.is_document:
            if not record["Number"]:
                record["Number"] = f"0000-{self.store.next_value('number:' + entity_set.name):06d}"
            if record["Date"] == EMPTY_DATE:
                record["Date"] = datetime.now().isoformat(timespec="seconds")

    def _check_unique_code(self, entity_set: EntitySet, record: dict) -> None:
        """The platform's uniqueness check of ``Code`` for a catalog configured to check it."""
        if not entity_set.check_unique or not record.get("Code"):
            return
        # Compared as 1C's database compares strings: without case, trailing spaces ignored.
        code = comparable(schema.STRING, record["Code"])
        for other in self.store.all(entity_set.name):
            if other["Ref_Key"] != record["Ref_Key"] and comparable(schema.STRING, other["Code"]) == code:
                raise business(f'Значение поля "Код" не уникально: {record["Code"]} '
                               f"(уже у {entity_set.name}(guid'{other['Ref_Key']}'))")

    def _seed(self, seed: dict[str, dict]) -> None:
        """Create the configuration's initial items that are missing (see ``schema.SEED``)."""
        keys: dict[str, dict[str, str]] = {}  # per set: match value -> Ref_Key, for ``parent`` and ``refs``
        for set_name, spec in seed.items():
            entity_set = self.entity_set(set_name)
            match = spec["match"]
            have = keys[set_name] = {record[match]: record["Ref_Key"] for record in self.store.all(set_name)}
            for item in spec["items"]:
                if item[match] in have:
                    continue
                record = self._defaults(entity_set)
                record["Ref_Key"] = str(uuid.uuid4())  # every real base has its own keys for these
                for name, value in item.items():
                    if name in entity_set.fields:
                        record[name] = value
                if "parent" in item:
                    record["Parent_Key"] = have[item["parent"]]
                for name, (target, natural) in item.get("refs", {}).items():
                    record[name] = keys[target][natural]
                self._fill_numbering(entity_set, record)
                record["DataVersion"] = self.store.new_data_version()
                self.store.insert(set_name, record)
                have[item[match]] = record["Ref_Key"]

    def _check_if_match(self, record: dict, if_match: str | None) -> None:
        if if_match is None or not self.honour_if_match:
            return
        expected = if_match.strip()
        if expected.startswith("W/"):
            expected = expected[2:]
        expected = expected.strip('"')
        if expected != "*" and expected != record["DataVersion"]:
            raise ODataError(412, BUSINESS, "Данные были изменены другим пользователем: DataVersion "
                                            f"{record['DataVersion']}, а в If-Match {if_match}")

    def _register(self, entity_set: EntitySet, record: dict, *, deleted: bool, origin: str | None) -> None:
        """Register the change for every exchange node but the one it came from."""
        if entity_set.kind == "ExchangePlan":
            return
        nodes = [node["Ref_Key"] for node in self.store.all(EXCHANGE_PLAN) if node["Ref_Key"] != origin]
        self.store.register_change(nodes, entity_set.name, record["Ref_Key"], record["DataVersion"],
                                   record["DeletionMark"], deleted)


def _label(name: str) -> str:
    """An attribute as 1C names it in a message (``Организация_Key`` -> ``Организация``)."""
    return name.removesuffix("_Key")


def _is_empty(field: Field, value) -> bool:
    return value in ("", None, EMPTY_GUID, EMPTY_DATE) or (field.edm in schema.NUMBERS and float(value) == 0)


def _stored(field: Field, value, name: str):
    """A wire value as stored: type-checked, an enumeration value checked, a string cut to its length."""
    stored = fit(to_storage(field.edm, value, name), field.max_length)
    if field.enum and stored != "" and stored not in schema.ENUMERATIONS[field.enum]:
        raise business(f"Значение {stored!r} не является значением перечисления {field.enum} (реквизит {name}); "
                       f"допустимые значения: {', '.join(schema.ENUMERATIONS[field.enum])}")
    if field.types and stored:
        try:
            stored = parse_guid(stored)
        except ValueError as e:
            raise bad_request(f"Неверное значение свойства {name} (ссылка составного типа): {e}") from e
    return stored


def _check_composite(field: Field, record: dict, name: str) -> None:
    """A composite attribute's value and its ``_Type`` must agree (``schema.composite``)."""
    value, type_name = record[field.name], record[f"{field.name}_Type"]
    allowed = [schema.TYPE_PREFIX + t for t in field.types]
    if type_name != schema.UNDEFINED_TYPE and type_name not in allowed:
        raise bad_request(f"Неверное значение свойства {name}_Type: {type_name!r}; допустимы "
                          f"{', '.join(allowed)} или {schema.UNDEFINED_TYPE}")
    if value and type_name == schema.UNDEFINED_TYPE:
        raise bad_request(f"Для значения свойства {name} составного типа не указан его тип ({name}_Type)")
    if not value and type_name != schema.UNDEFINED_TYPE:
        record[f"{field.name}_Type"] = schema.UNDEFINED_TYPE  # an empty value has no type
