"""The chatbot definition: a YAML script of steps, loaded and checked before anything uses it.

```yaml
id: payment-reminder
name: Payment reminder
language: es                      # BCP-47, fixed for the chatbot's life
custom_data: [NAME, DUE_DATE]     # Unique IDs of its Custom Data = the contact file's columns
start: ask
steps:
  ask:
    say: "Hola {NAME}, ¿pagarás el {DUE_DATE}? Responde SI o NO"
    replies:
      - when: [si, sí]            # whole reply, trimmed, case- and accent-insensitive
        goto: thanks
    otherwise: "Perdona, no entendí."   # sent when no option matches; the step waits again
  thanks:
    say: "¡Gracias {NAME}!"       # a step without replies ends the conversation
```
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from smartchat.errors import ChatbotError, ChatbotFileError

CONTACT_HEADER = "CONTACT"
UNIQUE_ID = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Anything in braces that looks like a name is meant as a placeholder; a typo such as `{name}`
# must be reported rather than sent to thousands of people as literal text.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
CHATBOT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _as_text(value: object) -> object:
    # An answer like `1` is a word the contact types, not a number.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reply(_Strict):
    when: list[Annotated[str, BeforeValidator(_as_text)]] = Field(min_length=1)
    goto: str


class Step(_Strict):
    # An empty or blank message would still be sent (and billed) as an SMS.
    say: str = Field(min_length=1, pattern=r"\S")
    replies: list[Reply] = Field(default_factory=list)
    otherwise: str | None = Field(default=None, min_length=1, pattern=r"\S")

    @property
    def is_final(self) -> bool:
        return not self.replies

    def texts(self) -> Iterator[tuple[str, str]]:
        """(field, text) of every message this step can send."""
        yield "say", self.say
        if self.otherwise is not None:
            yield "otherwise", self.otherwise

    def match(self, reply: str) -> Reply | None:
        """The option a contact's reply selects, or None (then `otherwise` is sent)."""
        key = normalize_reply(reply)
        for option in self.replies:
            if key in {normalize_reply(w) for w in option.when}:
                return option
        return None


class Chatbot(_Strict):
    id: str
    name: str
    language: str
    custom_data: list[str] = Field(default_factory=list)
    start: str
    steps: dict[str, Step] = Field(min_length=1)

    @cached_property
    def content_hash(self) -> str:
        """Identifies a version: the same definition hashes the same, whatever its YAML layout."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def messages(self) -> Iterator[tuple[str, str, str]]:
        """(step, field, text) of every message the chatbot can send, in definition order."""
        for step_id, step in self.steps.items():
            for field, text in step.texts():
                yield step_id, field, text

    def render(self, text: str, values: Mapping[str, str]) -> str:
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

    def first_message(self, values: Mapping[str, str]) -> str:
        return self.render(self.steps[self.start].say, values)


def normalize_reply(text: str) -> str:
    """Reply matching ignores case, accents and surrounding/repeated spaces: `  Sí ` == `si`."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


class _ChatbotLoader(yaml.SafeLoader):  # type: ignore[misc]  # (PyYAML ships no types)
    """Safe YAML, stricter where a chatbot needs it.

    YAML 1.1 reads `no`, `yes`, `on`, `off` as booleans; in a chatbot they are answers. And a
    repeated key (two `ask:` steps) would silently keep only the last one.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} appears twice (first on line {seen[key] + 1}): keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


_ChatbotLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ChatbotLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_chatbot(path: Path | str) -> Chatbot:
    """Read and check a chatbot YAML file; every problem at once, naming step and field."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_ChatbotLoader)  # noqa: S506
    except FileNotFoundError:
        raise ChatbotFileError(f"{path}: no such chatbot file.") from None
    except IsADirectoryError:
        raise ChatbotFileError(f"{path} is a folder: name the chatbot's .yaml file.") from None
    except UnicodeDecodeError:
        raise ChatbotFileError(f"{path}: is not UTF-8 text. Save it as UTF-8.") from None
    except OSError as exc:
        raise ChatbotFileError(f"{path}: can't be read ({exc.strerror or exc}).") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ChatbotError(f"{path}: is not valid YAML{at}: {exc}") from None
    return parse_chatbot(raw, source=str(path))


def parse_chatbot(raw: object, source: str = "<chatbot>") -> Chatbot:
    if not isinstance(raw, dict):
        raise ChatbotError(f"{source}: a chatbot is a YAML mapping with id, language, steps...")
    try:
        bot = Chatbot.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_location(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ChatbotError("\n".join(lines)) from None
    problems = [f"{source}: {p}" for p in chatbot_problems(bot)]
    if problems:
        raise ChatbotError("\n".join(problems))
    return bot.model_copy(update={"language": canonical_language(bot.language)})


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2 and parts[0] == "steps":
        return f"step '{parts[1]}', field '{'.'.join(parts[2:]) or parts[1]}'"
    return f"field '{'.'.join(parts)}'"


def chatbot_problems(bot: Chatbot) -> list[str]:
    """Every inconsistency in a structurally valid chatbot, as messages for its author."""
    problems: list[str] = []
    try:
        canonical_language(bot.language)
    except ValueError as exc:
        problems.append(f"field 'language': {exc}")
    if not CHATBOT_ID.match(bot.id):
        problems.append(
            f"field 'id': {bot.id!r} must be lowercase letters, digits, '-' or '_' "
            "(it is used in commands and file names)."
        )
    declared = bot.custom_data
    seen: set[str] = set()
    for uid in declared:
        if uid == CONTACT_HEADER:
            problems.append(
                "field 'custom_data': CONTACT is the phone column; it can't be a Custom Data ID."
            )
        elif not UNIQUE_ID.match(uid):
            hint = re.sub(r"[^A-Z0-9_]", "_", uid.upper())
            problems.append(
                f"field 'custom_data': Unique ID {uid!r} must be UPPER_SNAKE (e.g. {hint!r})."
            )
        if uid in seen:
            problems.append(f"field 'custom_data': Unique ID {uid!r} is listed twice.")
        seen.add(uid)

    used: set[str] = set()
    for step_id, field, text in bot.messages():
        for name in placeholders(text):
            used.add(name)
            if name not in seen:
                problems.append(
                    f"step '{step_id}', field '{field}': placeholder {{{name}}} is not a declared "
                    f"Custom Data Unique ID (declared: {', '.join(declared) or 'none'})."
                )
    for uid in declared:
        if uid not in used and uid != CONTACT_HEADER:
            problems.append(
                f"field 'custom_data': {uid} is declared but no message uses {{{uid}}}: "
                "remove it or use it, so contact files don't need a useless column."
            )

    if bot.start not in bot.steps:
        problems.append(f"field 'start': {bot.start!r} is not a step ({_names(bot.steps)}).")
    for step_id, step in bot.steps.items():
        options: set[str] = set()
        for i, option in enumerate(step.replies):
            where = f"step '{step_id}', field 'replies[{i}]"
            if option.goto not in bot.steps:
                problems.append(
                    f"{where}.goto': {option.goto!r} is not a step ({_names(bot.steps)})."
                )
            keys = {normalize_reply(word): word for word in option.when}
            if "" in keys:
                problems.append(f"{where}.when': an empty answer can't be matched.")
            for key in keys.keys() & options:
                problems.append(
                    f"{where}.when': {keys[key]!r} is already an answer of an earlier option."
                )
            options |= keys.keys()
        if step.otherwise is not None and step.is_final:
            problems.append(
                f"step '{step_id}', field 'otherwise': a step without replies ends the "
                "conversation, so its 'otherwise' would never be sent."
            )
    if bot.start in bot.steps:
        for step_id in bot.steps.keys() - _reachable(bot):
            problems.append(f"step '{step_id}': unreachable: no 'start' or 'goto' leads to it.")
    return problems


def canonical_language(tag: str) -> str:
    """The BCP-47 form of a known language tag (`EN` → `en`, `es-mx` → `es-MX`).

    Raises ValueError with a message for the chatbot's author. The canonical form matters: the
    language is fixed for a chatbot's life, and `EN` and `en` must not count as two languages.
    """
    from babel import Locale, UnknownLocaleError

    if "_" in tag:
        raise ValueError(f"{tag!r} is not BCP-47: write {tag.replace('_', '-')!r}.")
    parts = tag.strip().split("-")
    cased = [parts[0].lower()] + [p.title() if len(p) == 4 else p.upper() for p in parts[1:]]
    try:
        locale = Locale.parse("_".join(cased))
    except (UnknownLocaleError, ValueError):
        raise ValueError(
            f"{tag!r} is not a known language tag (e.g. es, en, pt-BR, es-419)."
        ) from None
    canonical = "-".join(p for p in (locale.language, locale.script, locale.territory) if p)
    # Babel quietly maps unknown regions to a likely one (en-ZZ → en-US): refuse instead.
    if canonical.lower() != "-".join(cased).lower():
        raise ValueError(f"{tag!r} is not a known language tag (did you mean {canonical!r}?).")
    return canonical


def _reachable(bot: Chatbot) -> set[str]:
    seen = {bot.start}
    frontier = [bot.start]
    while frontier:
        step = bot.steps.get(frontier.pop())
        for option in step.replies if step else []:
            if option.goto not in seen:
                seen.add(option.goto)
                frontier.append(option.goto)
    return seen


def _names(steps: Mapping[str, Step]) -> str:
    return "steps: " + ", ".join(steps)
