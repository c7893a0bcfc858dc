"""``$filter`` and ``$orderby``: a tokenizer, a parser and a compiler to Python predicates.

Grammar (OData v3, the subset 1C's standard interface accepts, developer guide §17.4.6.1)::

    expr    := and_expr ("or" and_expr)*
    and_expr:= unary ("and" unary)*
    unary   := "not" unary | compare
    compare := operand (("eq"|"ne"|"gt"|"ge"|"lt"|"le") operand)?
    operand := "(" expr ")" | function "(" expr ("," expr)* ")" | literal | property path
    literal := 'text' ('' escapes a quote) | number[mMdDlL] | true | false | null
             | guid'...' | datetime'YYYY-MM-DD[THH:MM[:SS]]'
    path    := Name ("/" Name)*          e.g. Контрагент/ИНН (through a reference's navigation property)

Functions 1C lists (§17.4.6.1): ``substringof(text, prop)``, ``startswith(prop, text)``, ``endswith(prop,
text)``, ``like(prop, pattern)`` (1C's ПОДОБНО: ``%`` any run, ``_`` one character), ``year``, ``month``,
``day``, ``hour``, ``minute``, ``second`` of a date. Other OData functions (``tolower``, ``length``,
``indexof``, ...) and arithmetic are refused with 1C's code 21, as real bases do (DESIGN §8). Strings compare
as 1C's query language does, ignoring case. A date-only literal means midnight. Types are checked when
compiling: a guid is compared with ``guid'...'``, a date with ``datetime'...'``, numbers with numbers.

``and``/``or`` chains are n-ary nodes built and evaluated in loops, so a 10,000-term ``or`` (a long key list)
costs no recursion; nesting by parentheses or ``not`` deeper than ``MAX_NESTING`` is a code 21 error, never a
RecursionError that would kill the connection.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Callable

from . import schema
from .errors import BAD_FILTER, ODataError, UNKNOWN_RESOURCE
from .values import comparable, parse_datetime, parse_guid

COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
MAX_NESTING = 100
# name -> (argument kinds, result kind); STRING arguments compare case-insensitively, like 1C's query language.
FUNCTIONS = {
    "substringof": ((schema.STRING, schema.STRING), schema.BOOLEAN),
    "startswith": ((schema.STRING, schema.STRING), schema.BOOLEAN),
    "endswith": ((schema.STRING, schema.STRING), schema.BOOLEAN),
    "like": ((schema.STRING, schema.STRING), schema.BOOLEAN),
    **{part: ((schema.DATETIME,), "number") for part in ("year", "month", "day", "hour", "minute", "second")},
}
ARITHMETIC = {"add", "sub", "mul", "div", "mod"}
NUMBER, NULL = "number", "null"  # literal kinds that are not Edm field types
ORDERABLE = {schema.STRING, schema.DATETIME, NUMBER, *schema.NUMBERS}
NUMERIC = {NUMBER, *schema.NUMBERS}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def filter_error(message: str) -> ODataError:
    return ODataError(400, BAD_FILTER, f"Ошибка в $filter: {message}")


@dataclass(frozen=True)
class Token:
    kind: str  # "(", ")", ",", "string", "guid", "datetime", "number", "name", "end"
    value: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "(),":
            tokens.append(Token(ch, ch, i))
            i += 1
        elif ch == "'":
            value, i = _quoted(text, i)
            tokens.append(Token("string", value, i))
        elif ch.isdigit() or (ch in "-." and i + 1 < n and text[i + 1].isdigit()):
            start = i
            i += 1
            while i < n and (text[i].isdigit() or text[i] in ".eE" or (text[i] in "+-" and text[i - 1] in "eE")):
                i += 1
            number = text[start:i]
            if i < n and text[i] in "mMdDlLfF":  # OData type suffixes: 1.5M, 10L
                i += 1
            tokens.append(Token("number", number, start))
        elif ch.isalpha() or ch in "_$":
            start = i
            while i < n and (text[i].isalnum() or text[i] in "_/$"):
                i += 1
            name = text[start:i]
            if i < n and text[i] == "'":  # typed literal: guid'...', datetime'...'
                value, i = _quoted(text, i)
                kind = name.lower()
                if kind not in ("guid", "datetime"):
                    raise filter_error(f"литералы вида {name}'...' не поддерживаются (позиция {start})")
                tokens.append(Token(kind, value, start))
            else:
                tokens.append(Token("name", name, start))
        else:
            raise filter_error(f"неожиданный символ {ch!r} в позиции {i}")
    tokens.append(Token("end", "", n))
    return tokens


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The body of a '...' literal starting at ``start`` ('' is a quote) and the index after it."""
    out, i = [], start + 1
    while i < len(text):
        if text[i] == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        out.append(text[i])
        i += 1
    raise filter_error(f"незакрытая строка с позиции {start}")


# AST nodes
@dataclass(frozen=True)
class Literal:
    kind: str  # an Edm type, NUMBER or NULL
    value: object


@dataclass(frozen=True)
class Property:
    name: str


@dataclass(frozen=True)
class Compare:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Logical:
    op: str  # "and" / "or"
    operands: tuple  # two or more, evaluated left to right in a loop


@dataclass(frozen=True)
class Call:
    name: str  # lower-case, a key of FUNCTIONS
    args: tuple


@dataclass(frozen=True)
class Not:
    operand: object


class Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def parse(self):
        node = self.expr()
        if self.peek().kind != "end":
            raise filter_error(f"лишний текст в позиции {self.peek().pos}: {self.peek().value!r}")
        return node

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token.kind == "name" and token.value.lower() in words:
            self.i += 1
            return token.value.lower()
        return None

    def expr(self):
        self._enter()
        operands = [self.and_expr()]
        while self.keyword("or"):
            operands.append(self.and_expr())
        self.depth -= 1
        return operands[0] if len(operands) == 1 else Logical("or", tuple(operands))

    def and_expr(self):
        operands = [self.unary()]
        while self.keyword("and"):
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else Logical("and", tuple(operands))

    def unary(self):
        nots = 0
        while self.keyword("not"):
            nots += 1
            if nots > MAX_NESTING:
                raise filter_error(f"слишком много not подряд (больше {MAX_NESTING})")
        node = self.compare()
        for _ in range(nots):
            node = Not(node)
        return node

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise filter_error(f"вложенность скобок больше {MAX_NESTING}")

    def compare(self):
        left = self.operand()
        token = self.peek()
        if token.kind == "name" and token.value.lower() in ARITHMETIC:
            raise filter_error(f"арифметическая операция {token.value} не поддерживается")
        op = self.keyword(*COMPARISONS)
        if op:
            return Compare(op, left, self.operand())
        return left

    def operand(self):
        token = self.take()
        if token.kind == "(":
            node = self.expr()
            if self.take().kind != ")":
                raise filter_error(f"ожидалась ')' в позиции {self.tokens[self.i - 1].pos}")
            return node
        if token.kind == "string":
            return Literal(schema.STRING, token.value)
        if token.kind == "number":
            try:
                return Literal(NUMBER, Decimal(token.value))
            except InvalidOperation as e:
                raise filter_error(f"неверное число {token.value!r}") from e
        if token.kind == "guid":
            try:
                return Literal(schema.GUID, parse_guid(token.value))
            except ValueError as e:
                raise filter_error(str(e)) from e
        if token.kind == "datetime":
            # A date alone means its midnight, as 1C reads datetime'2026-01-31'.
            text = token.value + "T00:00:00" if _DATE_ONLY.match(token.value) else token.value
            try:
                return Literal(schema.DATETIME, parse_datetime(text))
            except ValueError as e:
                raise filter_error(str(e)) from e
        if token.kind == "name":
            word = token.value.lower()
            if self.peek().kind == "(":
                return self.call(token)
            if word in ("true", "false"):
                return Literal(schema.BOOLEAN, word == "true")
            if word == "null":
                return Literal(NULL, None)
            if word in COMPARISONS | ARITHMETIC | {"and", "or", "not"}:
                raise filter_error(f"ожидался операнд, а не {token.value!r} (позиция {token.pos})")
            return Property(token.value)
        raise filter_error(f"ожидался операнд в позиции {token.pos}")

    def call(self, name: Token) -> Call:
        function = name.value.lower()
        if function not in FUNCTIONS:
            raise filter_error(f"функция {name.value}() не поддерживается")
        self.take()  # "("
        args = [self.expr()]
        while self.peek().kind == ",":
            self.take()
            args.append(self.expr())
        if self.take().kind != ")":
            raise filter_error(f"ожидалась ')' после аргументов {name.value}() (позиция {self.tokens[self.i - 1].pos})")
        expected = FUNCTIONS[function][0]
        if len(args) != len(expected):
            raise filter_error(f"{name.value}() принимает {len(expected)} аргумента, передано {len(args)}")
        return Call(function, tuple(args))


Predicate = Callable[[dict], bool]
Getter = Callable[[dict], object]
# A property path ("Number", "Контрагент/ИНН") -> (Edm type, function record -> stored value); None if unknown.
Resolver = Callable[[str], "tuple[str, Getter] | None"]


def plain_resolver(fields: dict[str, str]) -> Resolver:
    """Resolve the set's own properties only (no navigation)."""
    def resolve(name: str):
        if name not in fields:
            return None
        return fields[name], (lambda record: record.get(name))
    return resolve


def compile_filter(text: str, fields: dict[str, str] | Resolver) -> Predicate:
    """A predicate over stored records; ``fields`` maps property names to Edm types, or resolves paths."""
    resolve = plain_resolver(fields) if isinstance(fields, dict) else fields
    node = Parser(text).parse()
    predicate, kind = _compile(node, resolve)
    if kind != schema.BOOLEAN:
        raise filter_error("выражение не является логическим")
    return predicate


def _compile(node, resolve: Resolver):
    """(function record -> value, kind); boolean nodes return predicates of kind Edm.Boolean."""
    if isinstance(node, Literal):
        value = node.value
        return (lambda record: value), node.kind
    if isinstance(node, Property):
        resolved = resolve(node.name)
        if resolved is None:
            raise filter_error(f"неизвестное свойство {node.name}")
        edm, getter = resolved
        return getter, edm
    if isinstance(node, Not):
        inner, kind = _compile(node.operand, resolve)
        if kind != schema.BOOLEAN:
            raise filter_error("not применяется только к логическому выражению")
        return (lambda record: not inner(record)), schema.BOOLEAN
    if isinstance(node, Logical):
        predicates = []
        for operand in node.operands:
            predicate, kind = _compile(operand, resolve)
            if kind != schema.BOOLEAN:
                raise filter_error(f"{node.op} соединяет только логические выражения")
            predicates.append(predicate)
        if node.op == "and":
            return (lambda record: all(p(record) for p in predicates)), schema.BOOLEAN
        return (lambda record: any(p(record) for p in predicates)), schema.BOOLEAN
    if isinstance(node, Call):
        return _compile_call(node, resolve)
    if isinstance(node, Compare):
        return _compile_compare(node, resolve), schema.BOOLEAN
    raise filter_error(f"неподдерживаемый узел {node!r}")


def _like_regex(pattern: str) -> re.Pattern:
    """1C's ПОДОБНО: ``%`` any run of characters, ``_`` exactly one; the rest literal, case ignored."""
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern.casefold()]
    return re.compile("".join(parts), re.DOTALL)


def _compile_call(node: Call, resolve: Resolver):
    expected, result = FUNCTIONS[node.name]
    getters = []
    for arg, kind in zip(node.args, expected):
        getter, actual = _compile(arg, resolve)
        if actual not in (kind, NULL):
            raise filter_error(f"{node.name}(): ожидался аргумент типа {kind}, а не {actual}")
        getters.append(getter)
    if result == NUMBER:
        part = node.name
        (get_date,) = getters

        def date_part(record):
            value = get_date(record)
            return None if value is None else getattr(datetime.fromisoformat(value), part)
        return date_part, NUMBER
    first, second = getters

    def texts(record):
        a, b = first(record), second(record)
        return (None, None) if a is None or b is None else (a.casefold(), b.casefold())

    if node.name == "substringof":  # substringof(needle, haystack): OData v3's argument order
        return (lambda record: (lambda a, b: a is not None and a in b)(*texts(record))), schema.BOOLEAN
    if node.name == "startswith":
        return (lambda record: (lambda a, b: a is not None and a.startswith(b))(*texts(record))), schema.BOOLEAN
    if node.name == "endswith":
        return (lambda record: (lambda a, b: a is not None and a.endswith(b))(*texts(record))), schema.BOOLEAN
    # like(prop, pattern): a literal pattern is compiled once
    if isinstance(node.args[1], Literal) and isinstance(node.args[1].value, str):
        regex = _like_regex(node.args[1].value)
        return (lambda record: (lambda v: v is not None and regex.fullmatch(v.casefold()) is not None)(first(record))
                ), schema.BOOLEAN
    return (lambda record: (lambda a, b: a is not None and _like_regex(b).fullmatch(a) is not None)(*texts(record))
            ), schema.BOOLEAN


def _compile_compare(node: Compare, resolve: Resolver) -> Predicate:
    for side in (node.left, node.right):
        if not isinstance(side, (Literal, Property, Call)):
            raise filter_error(f"операнд {node.op} должен быть свойством, функцией или литералом")
    left, left_kind = _compile(node.left, resolve)
    right, right_kind = _compile(node.right, resolve)
    kinds = {left_kind, right_kind}
    if NULL in kinds:
        if node.op not in ("eq", "ne"):
            raise filter_error("null сравнивается только через eq/ne")
    elif not (left_kind == right_kind or kinds <= NUMERIC):
        raise filter_error(f"несовместимые типы в сравнении {node.op}: {left_kind} и {right_kind}")
    if node.op not in ("eq", "ne") and not kinds <= ORDERABLE:
        raise filter_error(f"{node.op} не применим к типу {left_kind}")
    # Literals compare like stored values of the property's type (numbers as Decimal, strings case-folded).
    left_edm = schema.DECIMAL if left_kind == NUMBER else left_kind
    right_edm = schema.DECIMAL if right_kind == NUMBER else right_kind

    def key(fn, edm):
        if edm == NULL:
            return lambda record: None
        if edm in schema.NUMBERS:
            return lambda record: None if fn(record) is None else Decimal(fn(record))
        return lambda record: comparable(edm, fn(record))

    get_left, get_right = key(left, left_edm), key(right, right_edm)
    op = node.op

    def predicate(record: dict) -> bool:
        a, b = get_left(record), get_right(record)
        if op == "eq":
            return a == b
        if op == "ne":
            return a != b
        if a is None or b is None:
            return False
        return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]

    return predicate


def parse_orderby(text: str, fields: dict[str, str] | Resolver) -> list[tuple[str, Getter, bool]]:
    """``Date desc, Контрагент/ИНН`` -> [(edm, getter, True), (edm, getter, False)]; True means descending."""
    resolve = plain_resolver(fields) if isinstance(fields, dict) else fields
    keys = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ODataError(400, UNKNOWN_RESOURCE, f"Неверный $orderby: {part.strip()!r}")
        resolved = resolve(words[0])
        if resolved is None:
            raise ODataError(400, UNKNOWN_RESOURCE, f"Неизвестное свойство в $orderby: {words[0]}")
        keys.append((*resolved, len(words) == 2 and words[1].lower() == "desc"))
    return keys


def sort_records(records: list[dict], keys: list[tuple[str, Getter, bool]]) -> list[dict]:
    """Stable multi-key sort: sort by the last key first."""
    ordered = list(records)
    for edm, getter, descending in reversed(keys):
        ordered.sort(key=lambda record: (getter(record) is not None, comparable(edm, getter(record))),
                     reverse=descending)
    return ordered
