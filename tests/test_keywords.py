"""Opt-out, opt-in and help keywords: alone, any case and accents, English or the chatbot's."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.keywords import Keyword, load_keywords
from smartchat.errors import SmartChatError

KEYWORDS = load_keywords()


@pytest.mark.parametrize(
    ("reply", "language", "kind"),
    [
        ("STOP", "es", Keyword.OPT_OUT),  # English always counts
        (" stop ", "en", Keyword.OPT_OUT),
        ("Baja", "es", Keyword.OPT_OUT),
        ("cancelar", "es-MX", Keyword.OPT_OUT),  # a regional tag uses its language's words
        ("BAJA", "en", None),  # Spanish words only for a Spanish chatbot
        ("STOP please", "en", None),  # not the keyword alone: an ordinary reply
        ("start", "es", Keyword.OPT_IN),
        ("Alta", "es", Keyword.OPT_IN),
        ("ayuda", "es", Keyword.HELP),
        ("HELP", "es", Keyword.HELP),
        ("sí", "es", None),
    ],
)
def test_keywords_alone_in_english_or_the_chatbots_language(reply, language, kind):
    assert KEYWORDS.classify(reply, language) is kind


def test_answers_come_in_the_chatbots_language():
    assert "ALTA" in KEYWORDS.texts("es-MX").opted_out
    assert "START" in KEYWORDS.texts("pt-BR").opted_out  # no Portuguese shipped: English


def test_a_replacement_file_and_its_mistakes(tmp_path: Path):
    custom = tmp_path / "k.yaml"
    entry = (
        "  opt_out: [STOP, ARRET]\n  opt_in: [START]\n  help: [HELP]\n"
        "  opted_out: bye\n  opted_in: hi\n  help_text: help\n"
    )
    custom.write_text(f"en:\n{entry}fr:\n{entry}")
    keywords = load_keywords(custom)
    assert keywords.classify("arrêt", "fr") is Keyword.OPT_OUT
    custom.write_text("fr:\n" + entry)
    with pytest.raises(SmartChatError, match="at least 'en'"):
        load_keywords(custom)
    custom.write_text("en:\n  opt_out: STOP\n")
    with pytest.raises(SmartChatError, match="needs exactly these keys"):
        load_keywords(custom)
