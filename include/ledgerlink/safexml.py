"""The one way Ledgerlink reads XML that came from outside: no DTD, so no entity of any kind (neither the
expansion of a "billion laughs" nor an external ``file:///etc/passwd``), and only the encodings a source may
declare (UTF-8, and Windows-1251 as Russian 1C bases export), decoded strictly first so that a byte that does not
decode is named with its offset instead of surfacing later as a parser's line and column.

Every reader of a received file calls :func:`parse_xml`; :func:`iterparse_xml` does the same for a file read as a
stream (our own message, checked after writing).
"""
from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ledgerlink.errors import BadFileError

# The names a source may declare, as Python's codecs know them; anything else is refused by name.
ACCEPTED_ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "windows-1251": "cp1251", "cp1251": "cp1251"}
_DECLARATION = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


class UnsafeXMLError(BadFileError):
    """XML that tries to declare a DTD or entities: refused before anything is expanded or fetched."""


def declared_encoding(data: bytes, source: str) -> str:
    """The Python codec for the file's declared encoding (a UTF-8 BOM or the XML declaration; UTF-8 when neither
    says), refused unless it is one we accept."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BadFileError(source, "UTF-16 is not accepted: expected UTF-8 or Windows-1251", line=1)
    match = _DECLARATION.match(data[:200])
    name = match.group(1).decode("ascii").lower() if match else "utf-8"
    if name not in ACCEPTED_ENCODINGS:
        raise BadFileError(source, f"declares encoding {name!r}: expected UTF-8 or Windows-1251", line=1)
    return ACCEPTED_ENCODINGS[name]


def check_decodes(data: bytes, source: str) -> str:
    """Decode the whole file strictly in its declared encoding; a byte that does not decode fails naming the
    file, the byte offset and the line. Returns the codec."""
    codec = declared_encoding(data, source)
    try:
        data.decode(codec)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BadFileError(source, f"byte {e.start} (0x{data[e.start]:02x}) does not decode as {codec}: "
                                   f"{e.reason}", line=line) from e
    return codec


def parse_xml(data: bytes, source: str) -> Element:
    """The document's root element, parsed with no DTD allowed; ``source`` (the file's name) is in every error."""
    check_decodes(data, source)
    try:
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise UnsafeXMLError(source, f"refused: {type(e).__name__} ({e}); a DTD or entity is never read") from e
    except ParseError as e:
        line, column = e.position
        raise BadFileError(source, f"not well-formed XML: {e}", line=line, field=f"column {column}") from e


def iterparse_xml(path: Path, events: tuple[str, ...] = ("end",)) -> Iterator[tuple[str, Element]]:
    """Stream a file's elements (``xml.etree`` iterparse semantics) with no DTD allowed: memory follows one
    element if the caller clears what it has read."""
    source = path.name
    with open(path, "rb") as head:
        declared_encoding(head.read(200), source)
    try:
        yield from SafeET.iterparse(str(path), events=events, forbid_dtd=True, forbid_entities=True,
                                    forbid_external=True)
    except DefusedXmlException as e:
        raise UnsafeXMLError(source, f"refused: {type(e).__name__} ({e}); a DTD or entity is never read") from e
    except ParseError as e:
        line, column = e.position
        raise BadFileError(source, f"not well-formed XML: {e}", line=line, field=f"column {column}") from e


def local_name(tag: str) -> str:
    """``{namespace}Name`` -> ``Name``."""
    return tag.rsplit("}", 1)[-1]
