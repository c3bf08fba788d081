"""Keywords a contact sends alone to opt out, opt back in or ask for help, and their answers.

A reply is a keyword only when it is the keyword alone (trimmed, any case and accents: "Stop",
" baja "); "STOP please" is an ordinary reply for the chatbot. English keywords always count
(carriers and aggregators use them everywhere); the chatbot's language adds its own, and its
texts answer. Opting out wins over a chatbot option with the same word: the law and the carriers
require it. The lists and texts ship in `keywords.yaml` beside this file (English and Spanish);
`load_keywords(path)` reads a replacement of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path

import yaml

from schemas.chatbot import normalize_reply
from schemas.text_files import read_text_file
from smartchat.errors import SmartChatError

FALLBACK_LANGUAGE = "en"


class Keyword(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


@dataclass(frozen=True)
class LanguageKeywords:
    words: dict[Keyword, frozenset[str]]  # normalised (normalize_reply) keywords
    opted_out: str
    opted_in: str
    help_text: str


@dataclass(frozen=True)
class Keywords:
    languages: dict[str, LanguageKeywords]

    def classify(self, reply: str, language: str) -> Keyword | None:
        """What a reply is when it is a keyword alone in English or `language`, else None."""
        return self.classify_normalized(normalize_reply(reply), language)

    def classify_normalized(self, key: str, language: str) -> Keyword | None:
        """`classify` for a reply already through `normalize_reply`."""
        for lang in {FALLBACK_LANGUAGE, self._language(language)}:
            for kind, words in self.languages[lang].words.items():
                if key in words:
                    return kind
        return None

    def texts(self, language: str) -> LanguageKeywords:
        """The answers in the chatbot's language (`es-MX` → `es`), English when unknown."""
        return self.languages[self._language(language)]

    def _language(self, tag: str) -> str:
        base = tag.split("-")[0].lower()
        return tag if tag in self.languages else base if base in self.languages else "en"


def load_keywords(path: Path | str | None = None) -> Keywords:
    """The shipped keywords, or those of `path` (a YAML file shaped like keywords.yaml)."""
    if path is None:
        text = resources.files(__package__).joinpath("keywords.yaml").read_text("utf-8")
        source = "keywords.yaml"
    else:
        text = read_text_file(Path(path), "keywords file")
        source = str(path)
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or FALLBACK_LANGUAGE not in raw:
        raise SmartChatError(
            f"{source}: a keywords file maps languages (at least 'en') to their keywords."
        )
    return Keywords({str(lang): _language(source, str(lang), entry) for lang, entry in raw.items()})


def _language(source: str, lang: str, entry: object) -> LanguageKeywords:
    fields = ("opt_out", "opt_in", "help", "opted_out", "opted_in", "help_text")
    if not isinstance(entry, dict) or set(entry) != set(fields):
        raise SmartChatError(f"{source}: {lang}: needs exactly these keys: {', '.join(fields)}.")
    words = {}
    for kind in Keyword:
        listed = entry[kind.value]
        if not isinstance(listed, list) or not listed:
            raise SmartChatError(f"{source}: {lang}.{kind.value}: a list of keywords.")
        words[kind] = frozenset(normalize_reply(str(w)) for w in listed)
    texts = [entry[k] for k in ("opted_out", "opted_in", "help_text")]
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise SmartChatError(f"{source}: {lang}: opted_out, opted_in, help_text are texts.")
    return LanguageKeywords(words, *texts)
