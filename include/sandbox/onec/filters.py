"""``$filter`` and ``$orderby``: a tokenizer, a recursive-descent parser and a compiler to Python predicates.

Grammar (OData v3, the subset 1C's standard interface accepts)::

    expr    := and_expr ("or" and_expr)*
    and_expr:= unary ("and" unary)*
    unary   := "not" unary | compare
    compare := operand (("eq"|"ne"|"gt"|"ge"|"lt"|"le") operand)?
    operand := "(" expr ")" | literal | property
    literal := 'text' ('' escapes a quote) | number[mMdDlL] | true | false | null
             | guid'...' | datetime'YYYY-MM-DDTHH:MM[:SS]'

Functions (``tolower(...)``, ``substringof(...)``, ...), arithmetic and property paths are refused with 1C's
code 21. Types are checked when compiling: a guid is compared with ``guid'...'``, a date with
``datetime'...'``, numbers with numbers; ordering (gt, lt, ...) is for strings, numbers and dates.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Callable

from . import schema
from .errors import BAD_FILTER, ODataError, UNKNOWN_RESOURCE
from .values import comparable, parse_datetime, parse_guid

COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
ARITHMETIC = {"add", "sub", "mul", "div", "mod"}
NUMBER, NULL = "number", "null"  # literal kinds that are not Edm field types
ORDERABLE = {schema.STRING, schema.DECIMAL, schema.INT64, schema.DATETIME, NUMBER}
NUMERIC = {schema.DECIMAL, schema.INT64, NUMBER}


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
    left: object
    right: object


@dataclass(frozen=True)
class Not:
    operand: object


class Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

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
        node = self.and_expr()
        while self.keyword("or"):
            node = Logical("or", node, self.and_expr())
        return node

    def and_expr(self):
        node = self.unary()
        while self.keyword("and"):
            node = Logical("and", node, self.unary())
        return node

    def unary(self):
        if self.keyword("not"):
            return Not(self.unary())
        return self.compare()

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
            try:
                return Literal(schema.DATETIME, parse_datetime(token.value))
            except ValueError as e:
                raise filter_error(str(e)) from e
        if token.kind == "name":
            word = token.value.lower()
            if self.peek().kind == "(":
                raise filter_error(f"функция {token.value}() не поддерживается")
            if word in ("true", "false"):
                return Literal(schema.BOOLEAN, word == "true")
            if word == "null":
                return Literal(NULL, None)
            if word in COMPARISONS | ARITHMETIC | {"and", "or", "not"}:
                raise filter_error(f"ожидался операнд, а не {token.value!r} (позиция {token.pos})")
            if "/" in token.value:
                raise filter_error(f"пути через навигационные свойства ({token.value}) не поддерживаются")
            return Property(token.value)
        raise filter_error(f"ожидался операнд в позиции {token.pos}")


Predicate = Callable[[dict], bool]


def compile_filter(text: str, fields: dict[str, str]) -> Predicate:
    """A predicate over stored records; ``fields`` maps property names to Edm types."""
    node = Parser(text).parse()
    predicate, kind = _compile(node, fields)
    if kind != schema.BOOLEAN:
        raise filter_error("выражение не является логическим")
    return predicate


def _compile(node, fields: dict[str, str]):
    """(function record -> value, kind); boolean nodes return predicates of kind Edm.Boolean."""
    if isinstance(node, Literal):
        value = node.value
        return (lambda record: value), node.kind
    if isinstance(node, Property):
        if node.name not in fields:
            raise filter_error(f"неизвестное свойство {node.name}")
        name, edm = node.name, fields[node.name]
        return (lambda record: record.get(name)), edm
    if isinstance(node, Not):
        inner, kind = _compile(node.operand, fields)
        if kind != schema.BOOLEAN:
            raise filter_error("not применяется только к логическому выражению")
        return (lambda record: not inner(record)), schema.BOOLEAN
    if isinstance(node, Logical):
        left, left_kind = _compile(node.left, fields)
        right, right_kind = _compile(node.right, fields)
        if left_kind != schema.BOOLEAN or right_kind != schema.BOOLEAN:
            raise filter_error(f"{node.op} соединяет только логические выражения")
        if node.op == "and":
            return (lambda record: left(record) and right(record)), schema.BOOLEAN
        return (lambda record: left(record) or right(record)), schema.BOOLEAN
    if isinstance(node, Compare):
        return _compile_compare(node, fields), schema.BOOLEAN
    raise filter_error(f"неподдерживаемый узел {node!r}")


def _compile_compare(node: Compare, fields: dict[str, str]) -> Predicate:
    for side in (node.left, node.right):
        if not isinstance(side, (Literal, Property)):
            raise filter_error(f"операнд {node.op} должен быть свойством или литералом")
    left, left_kind = _compile(node.left, fields)
    right, right_kind = _compile(node.right, fields)
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
        if edm == schema.DECIMAL:
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


def parse_orderby(text: str, fields: dict[str, str]) -> list[tuple[str, bool]]:
    """``Date desc, Number`` -> [("Date", True), ("Number", False)]; True means descending."""
    keys = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ODataError(400, UNKNOWN_RESOURCE, f"Неверный $orderby: {part.strip()!r}")
        if words[0] not in fields:
            raise ODataError(400, UNKNOWN_RESOURCE, f"Неизвестное свойство в $orderby: {words[0]}")
        keys.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return keys


def sort_records(records: list[dict], keys: list[tuple[str, bool]], fields: dict[str, str]) -> list[dict]:
    """Stable multi-key sort: sort by the last key first."""
    ordered = list(records)
    for name, descending in reversed(keys):
        edm = fields[name]
        ordered.sort(key=lambda record: (record.get(name) is not None, comparable(edm, record.get(name))),
                     reverse=descending)
    return ordered
