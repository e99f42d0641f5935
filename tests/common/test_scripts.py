"""Mixed-script detection (common/scripts.py, UTS #39 §5.1) against the Unicode data it rests on."""

from __future__ import annotations

import regex._regex_core as regex_tables

from common.scripts import SCRIPTS, mixed_scripts, script_set


def test_every_script_the_unicode_tables_know_is_listed():
    # The package's own table of Script_Extensions values (private, read here only to check the list).
    values = regex_tables.PROPERTIES["SCRIPTEXTENSIONS"][1]
    known = {number for name, number in values.items()} - {values["UNKNOWN"]}
    listed = {values[script.upper()] for script in SCRIPTS}
    assert listed == known and len(SCRIPTS) == len(listed)


def test_lookalikes_of_admin_mix_scripts_and_real_names_do_not():
    assert mixed_scripts("\u0430dmin") == ("Cyrl", "Latn")
    assert mixed_scripts("adm\u0456n") == ("Cyrl", "Latn")
    assert mixed_scripts("mix\u5c71") == ("Hani", "Latn")
    for name in (
        "admin",
        "Émile",
        "иван",
        "やまだ太郎",
        "カタカナー",
        "김철수",
        "user_01-2",
        "x\u0301",
        "٠١٢",
    ):
        assert mixed_scripts(name) == (), name


def test_common_and_inherited_characters_fit_any_script_and_han_joins_japanese_and_korean():
    assert script_set("_") == script_set("7") == frozenset()
    assert {"Latn", "Cyrl", "Grek"} <= script_set("\u0301")  # a combining acute: its Script_Extensions
    assert {"Jpan", "Kore", "Hanb"} <= script_set("\u5c71")
    assert "Jpan" in script_set("\u3084") and "Kore" in script_set("\uae40")
    assert mixed_scripts("\u5c71\uae40") == ()  # Han and Hangul: Korean
    assert mixed_scripts("\u3084\uae40") == ("Hang", "Hira")  # Hiragana and Hangul: none writes both
