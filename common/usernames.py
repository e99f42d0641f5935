"""Usernames: one spelling per account, whatever the keyboard or script.

A name is stored NFKC-normalised (fullwidth ``ａｄｍｉｎ`` becomes ``admin``);
accounts are told apart by :func:`username_key`, its case-folded form, which
has a unique index. Control, format and separator characters (zero-width
spaces, RTL overrides, spaces) are refused: they make names that look alike.
So are names mixing scripts (``аdmin`` with a Cyrillic ``а``), as Unicode's
confusable detection defines it (``common.scripts``; docs/contract.md §16).
Normalisation happens here in Python: SQLite's ``lower()`` and ``NOCASE``
fold ASCII only.
"""

from __future__ import annotations

import unicodedata

from common.scripts import mixed_scripts

# Unicode categories a username may not contain: control, format (zero-width,
# bidi overrides), unassigned, private use, surrogates, and every separator.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zs", "Zl", "Zp"})
KEY_MAX = 400  # a key can be longer than its name ("ß" folds to "ss")


def normalise_username(name: str) -> str:
    """The stored spelling: NFKC, without surrounding whitespace."""
    return unicodedata.normalize("NFKC", name.strip())


def username_key(name: str) -> str:
    """What two names must differ in to be two accounts: NFKC, case-folded, NFKC again."""
    return unicodedata.normalize("NFKC", normalise_username(name).casefold())


def username_problem(name: str) -> str | None:
    """Why ``name`` (already normalised) cannot be a username, or ``None``."""
    for char in name:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            return f"must not contain spaces, invisible or control characters (found U+{ord(char):04X})"
    if len(username_key(name)) > KEY_MAX:
        return "is too long"
    mixed = mixed_scripts(name)
    if mixed:
        return f"must be written in one script, not mixed ({', '.join(mixed)}): such names pass for others"
    return None
