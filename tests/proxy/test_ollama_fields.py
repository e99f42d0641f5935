"""Go's case-insensitive key match as the gateway mirrors it (docs/contract.md §16)."""

from __future__ import annotations

import pytest

from proxy_app.bodies import multipart_model
from proxy_app.errors import BadRequest
from proxy_app.ollama_fields import FIELDS, GO_ASCII_FOLDS, case_variant, go_fold
from tests.proxy.multipart_bodies import multipart


def test_only_the_kelvin_sign_and_long_s_fold_onto_ascii_letters():
    # Go's foldName maps each rune to the least of its simple case-fold orbit; the runes outside
    # ASCII whose orbit holds an ASCII letter are those Unicode folds to one ASCII letter.
    derived = {
        chr(cp): chr(cp).casefold()
        for cp in range(0x80, 0x110000)
        if len(chr(cp).casefold()) == 1 and chr(cp).casefold().isascii()
    }
    assert derived == GO_ASCII_FOLDS


@pytest.mark.parametrize("route", sorted(FIELDS))
def test_every_field_ollama_reads_is_refused_in_another_case(route):
    for field in FIELDS[route]:
        assert case_variant(route, [field]) is None
        for variant in (
            field.upper(),
            field.capitalize(),
            field.replace("s", "\u017f"),
            field.replace("k", "\u212a"),
        ):
            if variant != field:
                assert case_variant(route, [field, variant]) == (variant, field)


def test_keys_that_fold_onto_no_field_of_the_route_pass():
    assert case_variant("/api/chat", ["Prompt", "NAME", "modèl", "ıd"]) is None  # ChatRequest has none
    assert case_variant("/api/generate", ["Prompt"]) == ("Prompt", "prompt")
    assert go_fold("\u212aeep_alive") == "keep_alive"
    assert go_fold("MODEL\u0130") == "model\u0130"  # İ folds onto nothing ASCII in Go


def test_an_over_long_model_part_is_400():
    body, content_type = multipart(("model", "", b"q" * 1025))
    with pytest.raises(BadRequest, match="over 1024 bytes"):
        multipart_model(content_type, body)
