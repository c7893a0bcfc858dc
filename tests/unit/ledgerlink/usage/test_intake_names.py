"""Names from a listing: hostile ones are refused before they become a path, here or on the server."""
from __future__ import annotations

import pytest

from ledgerlink.errors import BadInputError
from ledgerlink.usage.intake import hostile_name_reason, landing_path

HOSTILE = ["../x", "..", ".", "", "/etc/passwd", "a/../../b", "..\\x", "C:\\x", "c:x", "a\x00b", "a\nb.csv",
           "evil\u202ecsv.exe", "x" * 256, "ж" * 128, "-rf.csv", "~root", "CON", "nul.csv", "trailing. ", "trailing."]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_and_never_become_a_path(tmp_path, name):
    assert hostile_name_reason(name)
    with pytest.raises(BadInputError, match="refused as a file name"):
        landing_path(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["cdr_BR01_20261101.utf-8.csv", "cdr_МСК_20261101.cp1251.csv", "x" * 255,
                                  ".cdr_BR01.part"])
def test_plain_names_land_inside_the_landing_folder(tmp_path, name):
    assert hostile_name_reason(name) is None
    assert landing_path(tmp_path, name).parent == tmp_path.resolve()
