"""Mixed-script detection as Unicode's confusable detection defines it (UTS #39 §5.1).

``аdmin`` with a Cyrillic ``а`` or ``admіn`` with a Ukrainian ``і`` look like
``admin`` yet are other names. UTS #39 calls a string mixed-script when the
intersection of its characters' augmented Script_Extensions is empty, where
Common and Inherited characters (digits, ``_``, ``-``, combining marks) fit
any script and Han, Hiragana, Katakana, Hangul and Bopomofo augment to the
writing systems that combine them (Japanese ``Jpan``, Korean ``Kore``,
``Hanb``). So ``やまだ太郎`` is one script (Japanese), ``аdmin`` two.

The standard library has no Script property (``unicodedata`` stops at the
category), so the Script_Extensions data comes from the ``regex`` package's
Unicode tables (``\\p{scx=...}``); :data:`SCRIPTS` lists every script value
it knows, and tests/common/test_scripts.py holds the list to the package's.
"""

from __future__ import annotations

from functools import cache

import regex

# Every Script_Extensions value but Unknown (Zzzz: unassigned characters are refused before this).
SCRIPTS = (
    "Zyyy Zinh Latn Grek Copt Cyrl Armn Hebr Arab Syrc Thaa Nkoo Samr Mand Deva Beng Guru Gujr Orya Taml"
    " Telu Knda Mlym Sinh Thai Laoo Tibt Mymr Geor Hang Ethi Cher Cans Ogam Runr Tglg Hano Buhd Tagb Khmr"
    " Mong Limb Tale Talu Bugi Lana Bali Sund Batk Lepc Olck Brai Glag Tfng Hani Hira Kana Hrkt Bopo Yiii"
    " Lisu Vaii Bamu Sylo Phag Saur Kali Rjng Java Cham Tavt Mtei Linb Lyci Cari Ital Goth Perm Ugar Xpeo"
    " Dsrt Shaw Osma Osge Elba Aghb Vith Todr Lina Cprt Armi Palm Nbat Hatr Phnx Lydi Sidt Mero Merc Khar"
    " Sarb Narb Mani Avst Prti Phli Phlp Orkh Hung Rohg Gara Yezi Sogo Sogd Ougr Chrs Elym Brah Kthi Sora"
    " Cakm Mahj Shrd Khoj Mult Sind Gran Tutg Newa Tirh Sidd Modi Takr Ahom Dogr Wara Diak Nand Zanb Soyo"
    " Pauc Sunu Bhks Marc Gonm Gong Tols Maka Kawi Xsux Pcun Cpmn Egyp Hluw Gukh Mroo Tnsa Bass Hmng Krai"
    " Medf Berf Miao Tang Nshu Kits Jurc Dupl Sgnw Hmnp Toto Wcho Nagm Onao Tayo Mend Adlm Seal"
).split()
ANY = frozenset({"Zyyy", "Zinh"})  # Common and Inherited: fit every script
# UTS #39's augmentation: a character of these scripts also belongs to the writing systems mixing them.
AUGMENTED = {
    "Hani": {"Hanb", "Jpan", "Kore"},
    "Hira": {"Jpan"},
    "Kana": {"Jpan"},
    "Hrkt": {"Hira", "Kana", "Jpan"},
    "Hang": {"Kore"},
    "Bopo": {"Hanb"},
}
_PATTERNS = {script: regex.compile(rf"\p{{scx={script}}}") for script in SCRIPTS}


@cache
def script_set(char: str) -> frozenset[str]:
    """The augmented Script_Extensions of ``char``; empty for Common and Inherited (they fit any)."""
    scripts = {script for script, pattern in _PATTERNS.items() if pattern.match(char)}
    if not scripts or scripts & ANY:
        return frozenset()
    for script in list(scripts):
        scripts |= AUGMENTED.get(script, set())
    return frozenset(scripts)


def mixed_scripts(text: str) -> tuple[str, ...]:
    """The scripts ``text`` mixes (two or more, sorted), or ``()`` when it is written in one."""
    resolved: frozenset[str] | None = None
    seen: set[str] = set()
    for char in text:
        scripts = script_set(char)
        if not scripts:
            continue
        seen.add(min(scripts - set().union(*AUGMENTED.values()) or scripts))
        resolved = scripts if resolved is None else resolved & scripts
    return tuple(sorted(seen)) if resolved is not None and not resolved else ()
