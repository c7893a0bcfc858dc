"""The one XML reader for what comes from outside: no DTD and so no entity, only UTF-8 or Windows-1251, and a byte
that does not decode named with the file, its offset and its line."""
from __future__ import annotations

import pytest

from ledgerlink.errors import BadFileError
from ledgerlink.safexml import UnsafeXMLError, iterparse_xml, parse_xml

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<Message>&lol9;</Message>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY secret SYSTEM "file:///etc/passwd">]><Message>&secret;</Message>"""
PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]><Message/>"""
DTD_ONLY = b"""<?xml version="1.0"?><!DOCTYPE Message SYSTEM "file:///etc/passwd"><Message/>"""


@pytest.mark.parametrize("data", [BOMB, EXTERNAL, PARAMETER, DTD_ONLY],
                         ids=["billion_laughs", "external_entity", "parameter_entity", "external_dtd"])
def test_any_dtd_or_entity_is_refused_naming_the_file(data):
    with pytest.raises(UnsafeXMLError, match=r"^answer\.xml: refused"):
        parse_xml(data, "answer.xml")


@pytest.mark.parametrize("data", [BOMB, EXTERNAL], ids=["billion_laughs", "external_entity"])
def test_the_streaming_reader_refuses_them_too(tmp_path, data):
    path = tmp_path / "message.xml"
    path.write_bytes(data)
    with pytest.raises(UnsafeXMLError, match="message.xml: refused"):
        list(iterparse_xml(path))


@pytest.mark.parametrize("declared", ["windows-1251", "WINDOWS-1251", "cp1251"])
def test_windows_1251_is_read(declared):
    data = f'<?xml version="1.0" encoding="{declared}"?><Message>Обмен завершён</Message>'.encode("cp1251")
    assert parse_xml(data, "a.xml").text == "Обмен завершён"


def test_utf8_with_and_without_bom_is_read():
    text = "<Message>Ромашка</Message>"
    assert parse_xml(text.encode(), "a.xml").text == "Ромашка"
    assert parse_xml(b"\xef\xbb\xbf" + text.encode(), "a.xml").text == "Ромашка"


def test_a_byte_that_does_not_decode_is_named_with_file_offset_and_line():
    data = '<?xml version="1.0" encoding="UTF-8"?>\n<Message>\nОК \xff</Message>'.encode("utf-8")
    data = data.replace("\xff".encode(), b"\xff")
    offset = data.index(b"\xff")
    with pytest.raises(BadFileError) as caught:
        parse_xml(data, "Message_1C_BILLING.xml")
    assert str(caught.value).startswith("Message_1C_BILLING.xml, line 3: ")
    assert f"byte {offset} (0xff) does not decode as utf-8" in str(caught.value)


def test_the_one_byte_windows_1251_does_not_map_is_named_too():
    data = b'<?xml version="1.0" encoding="windows-1251"?><Message>\x98</Message>'
    assert data.index(b"\x98") == 54
    with pytest.raises(BadFileError, match=r"byte 54 \(0x98\) does not decode as cp1251"):
        parse_xml(data, "a.xml")


@pytest.mark.parametrize("data", [b'<?xml version="1.0" encoding="ISO-8859-1"?><a/>', "<a/>".encode("utf-16")],
                         ids=["latin1", "utf16"])
def test_other_encodings_are_refused_by_name(data):
    with pytest.raises(BadFileError, match="expected UTF-8 or Windows-1251"):
        parse_xml(data, "a.xml")


def test_xml_that_is_not_well_formed_names_line_and_column():
    with pytest.raises(BadFileError, match=r"a\.xml, line 2, field 'column \d+': not well-formed"):
        parse_xml(b"<Message>\n<Header></Message>", "a.xml")
