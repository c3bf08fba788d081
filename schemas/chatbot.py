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
    replies: &yesno               # an anchor: later steps can reuse these options
      - when: [si, sí]            # whole reply, trimmed, case- and accent-insensitive
        goto: thanks
    otherwise: "Perdona, no entendí."   # sent when no option matches; the step waits again
  remind:
    say: "{NAME}, ¿pagarás el {DUE_DATE}?"
    replies: *yesno               # an alias: the same options as `ask`
  thanks:
    say: "¡Gracias {NAME}!"       # a step without replies ends the conversation
```

Placeholders and braces. A placeholder is exactly `{UNIQUE_ID}`: one brace on each side, no
spaces, a Unique ID listed in `custom_data`. Braces mean nothing else in a message: any `{` or `}`
that is not part of a well-formed placeholder (`{ NAME }`, `{{NAME}}`, `{NAME`, `NAME}`, `{}`,
`{name}`) is refused with the fix, rather than sent to thousands of people as written. There is
no escape for a literal brace: SMS text almost never needs one (GSM-7 even bills it as two
characters), an escape would make the characters counted here differ from the ones sent, and
`(` `)` say the same thing. So text that needs brackets uses parentheses.

YAML. Safe loading only; anchors, aliases and merge keys (`<<: *common`) work, and a key the
file defines itself overrides a merged one. Everything is text: `no`, `yes`, `on`, `1:30`,
`2024-01-31` and `007` stay exactly as typed (YAML 1.1 would turn them into booleans, numbers and
dates; a chatbot has no numeric fields, and an answer is a word the contact types). Refused with
the line: a key written twice in one mapping, nesting deeper than `MAX_DEPTH`, aliases that expand
to more than `MAX_NODES` values (a "billion laughs" file) or that contain themselves, and tags
(`!!int`, `!python/...`).

Errors name the file, then the field as a path: dots for keys, brackets for list positions
(`steps.ask.replies[1].when[0]`; a key that is not a plain word is quoted: `steps["my step"]`).
`load_chatbot` checks the definition; `check_message_lengths` checks its fixed text against the
configured SMS limit, which the caller passes in (this module reads no settings).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from schemas.text_files import read_text_file
from smartchat.errors import ChatbotError, ChatbotFileError

CONTACT_HEADER = "CONTACT"
UNIQUE_ID = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Anything in braces that looks like a name is meant as a placeholder; a typo such as `{name}`
# must be reported rather than sent to thousands of people as literal text. (tasks.sms counts a
# message's fixed characters with this same pattern, so it must keep matching what `render` fills.)
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
CHATBOT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

# A real chatbot nests about 7 levels (steps > step > replies > option > when > word) and has at
# most a few thousand values; these bounds are far above that and far below what exhausts
# Python's recursion limit or memory.
MAX_DEPTH = 50
MAX_NODES = 100_000

# Every brace-delimited token, longest first, so `{{NAME}}` is seen whole and not as `{NAME}`
# inside stray braces; a brace that closes nothing (or opens nothing) is a token of its own.
_BRACES = re.compile(r"\{\{[^{}]*\}\}|\{[^{}]*\}|[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACES_ARE_PLACEHOLDERS = "braces only mark placeholders (for text, write ( ) instead)"
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _as_text(value: object) -> object:
    # An answer like `1` is a word the contact types, not a number. (The YAML loader already keeps
    # it as text; this covers definitions parsed from other sources, such as stored JSON.)
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# "si claro", "no gracias": the few words a contact wraps an answer in, for `match: words`.
MAX_WORDS = 6
_NUMBERED = re.compile(r"(?:^|\s)([1-9])\s*[.):-]")


def _seconds(value: object) -> object:
    """`expire_after: 24h` (also 90s, 30m, 2d, or plain seconds) as seconds."""
    if isinstance(value, str) and (found := DURATION.match(value)):
        return float(found.group(1)) * _UNIT_SECONDS[(found.group(2) or "s").lower()]
    return value


class Reply(_Strict):
    when: list[Annotated[str, BeforeValidator(_as_text)]] = Field(min_length=1)
    goto: str
    # "exact": the whole reply is one of `when`. "words": one of `when` among a few words
    # ("si claro"), opted into per option because "no sé si pueda" must not be a yes.
    match: Literal["exact", "words"] = "exact"


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
        """The option a contact's reply selects, or None (then `otherwise` is sent).

        In order: the whole reply is an answer of an option; the reply is a number N and the
        message lists numbered options ("1) Sí  2) No"): the Nth option; an option with
        `match: words` has an answer among the reply's few words, and no other option does.
        """
        return self.match_normalized(normalize_reply(reply))

    def match_normalized(self, key: str) -> Reply | None:
        """`match` for a reply already through `normalize_reply` (the engine normalises once)."""
        for option, answers in zip(self.replies, self._answers, strict=True):
            if key in answers:
                return option
        if key.isdigit() and self.numbered and 1 <= int(key) <= len(self.replies):
            return self.replies[int(key) - 1]
        words = key.split()
        if not words or len(words) > MAX_WORDS:
            return None
        found = [
            option
            for option in self.replies
            if option.match == "words"
            and any(_contains_words(words, normalize_reply(w).split()) for w in option.when)
        ]
        return found[0] if len(found) == 1 else None

    @cached_property
    def _answers(self) -> list[frozenset[str]]:
        return [frozenset(normalize_reply(w) for w in option.when) for option in self.replies]

    @property
    def numbered(self) -> bool:
        """The message lists its options by number (1 and 2 at least: "1) Sí 2) No")."""
        listed = {int(n) for n in _NUMBERED.findall(self.say)}
        return {1, 2} <= listed if len(self.replies) > 1 else 1 in listed


def _contains_words(words: list[str], answer: list[str]) -> bool:
    n = len(answer)
    return n > 0 and any(words[i : i + n] == answer for i in range(len(words) - n + 1))


class Chatbot(_Strict):
    id: str
    name: str
    language: str
    custom_data: list[str] = Field(default_factory=list)
    start: str
    steps: dict[str, Step] = Field(min_length=1)
    # A conversation with no reply for this long ends as expired (`24h`, `30m`, `90s`).
    expire_after: Annotated[float, BeforeValidator(_seconds)] = Field(default=86400.0, gt=0)
    # Replies in a row that match no option before the conversation ends (each gets `otherwise`).
    max_misses: int = Field(default=3, ge=1, le=100)

    @cached_property
    def content_hash(self) -> str:
        """Identifies a version: the same definition hashes the same, whatever its YAML layout.

        Settings left at their defaults are not part of it, so a definition written before they
        existed keeps its version.
        """
        definition = self.model_dump(mode="json")
        for name in ("expire_after", "max_misses"):
            if definition[name] == Chatbot.model_fields[name].default:
                del definition[name]
        for step in definition["steps"].values():
            for option in step["replies"]:
                if option["match"] == "exact":
                    del option["match"]
        canonical = json.dumps(definition, sort_keys=True, ensure_ascii=False)
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


def fixed_text(text: str) -> str:
    """A message without its placeholders: the part every contact receives the same."""
    return PLACEHOLDER.sub("", text)


def field_path(*parts: str | int) -> str:
    """`steps.ask.replies[1].when`: dots for keys, brackets for list positions.

    A key that is not a plain word (a step named `my step` or `a.b`) is quoted in brackets, so the
    path still says unambiguously where to look.
    """
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
    return path


def check_message_lengths(chatbot: Chatbot, max_chars: int, *, source: str | None = None) -> None:
    """Refuse a message whose fixed text alone (placeholders removed) is over `max_chars`.

    Such a message is too long for every contact whatever their data, so the contact file's check
    would blame each contact's values for the chatbot's fault. Characters are counted as the
    contact check counts them (`len` of the text, as tasks.sms does). Every such message is named
    at once; `source` (the file) prefixes each line when given.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    prefix = f"{source}: " if source else ""
    problems = []
    for step_id, field, text in chatbot.messages():
        length = len(fixed_text(text))
        if length > max_chars:
            problems.append(
                f"{prefix}{field_path('steps', step_id, field)}: its fixed text alone (without "
                f"placeholders) is {length:,} characters, over the limit of {max_chars:,} per "
                "message: shorten it (no contact's data can make it fit)."
            )
    if problems:
        raise ChatbotError("\n".join(problems))


# --- loading the YAML --------------------------------------------------------------------------

_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"
# Every value of a chatbot is text; a number, date or `=` resolved implicitly would change what
# the author typed (`1:30` is 5400 in YAML 1.1) or crash its constructor (`2024-13-45`).
_NOT_TEXT = {
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:value",
    _BOOL,
}


class _YamlRefused(yaml.YAMLError):  # type: ignore[misc]  # (PyYAML ships no types)
    """Valid YAML this loader won't build: the problem for the author and where it is."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


class _ChatbotLoader(yaml.SafeLoader):  # type: ignore[misc]  # (PyYAML ships no types)
    """Safe YAML, stricter where a chatbot needs it.

    YAML 1.1 reads `no`, `yes`, `on`, `off` as booleans; in a chatbot they are answers. A
    repeated key (two `ask:` steps) would silently keep only the last one. And PyYAML's composer
    recurses once per nesting level, its constructor shares aliased values without bounding what
    they expand to: a hostile or mistyped file must get a message, not a traceback or a hang.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Counted while composing, before the recursion that would exhaust Python's stack.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _YamlRefused(
                    f"nested more than {MAX_DEPTH} levels deep; a chatbot needs about 7 "
                    "(is a bracket repeated or never closed?).",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Any) -> Any:
        # Checked on the composed tree, before SafeConstructor flattens merge keys into their
        # mappings: afterwards a merged key and the key overriding it would look like duplicates.
        _NodeCheck().visit(node, 1)
        return super().construct_document(node)


class _NodeCheck:
    """One pass over the composed nodes: duplicate keys, tags, depth and size through aliases.

    An alias is the same node object as its anchor, so sizes are memoised per node: the check is
    linear in the file even when the aliases expand exponentially.
    """

    def __init__(self) -> None:
        self.measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels)
        self.open: set[int] = set()

    def visit(self, node: Any, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in self.open:
            raise _YamlRefused(
                "an alias (*name) is used inside the anchor (&name) it refers to: "
                "a chatbot can't contain itself.",
                node.start_mark,
            )
        if key not in self.measured:
            if depth > MAX_DEPTH:
                raise _too_deep(node)
            self.open.add(key)
            self.measured[key] = self._measure(node, depth)
            self.open.discard(key)
        size, levels = self.measured[key]
        if depth + levels - 1 > MAX_DEPTH:
            raise _too_deep(node)
        return size, levels

    def _measure(self, node: Any, depth: int) -> tuple[int, int]:
        children: list[Any] = []
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            _check_tag(node, _SEQ)
            children = list(node.value)
        else:
            _check_tag(node, _MAP)
            _check_keys(node)
            for key_node, value_node in node.value:
                if key_node.tag != _MERGE:
                    children.append(key_node)
                children.append(value_node)
        size, levels = 1, 1
        for child in children:
            child_size, child_levels = self.visit(child, depth + 1)
            size += child_size
            levels = max(levels, child_levels + 1)
            if size > MAX_NODES:
                raise _YamlRefused(
                    f"this holds more than {MAX_NODES:,} values (counting every use of an "
                    "alias, *name); a chatbot is far smaller.",
                    node.start_mark,
                )
        return size, levels


def _too_deep(node: Any) -> _YamlRefused:
    return _YamlRefused(
        f"nested (through aliases, *name) more than {MAX_DEPTH} levels deep; "
        "a chatbot needs about 7.",
        node.start_mark,
    )


def _check_tag(node: Any, expected: str) -> None:
    if node.tag != expected:
        tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
        raise _YamlRefused(
            f"the tag {tag} is not used in a chatbot file (every value is text): remove it.",
            node.start_mark,
        )


def _check_scalar(node: Any) -> None:
    if node.tag == _MERGE:
        # `<<` where a value goes (say: <<) is text; only as a key does it merge.
        node.tag = _STR
    elif node.tag == _BOOL and node.value.lower() not in yaml.SafeLoader.bool_values:
        # An explicit `!!bool maybe` would crash the constructor with a KeyError.
        _check_tag(node, _STR)
    elif node.tag not in (_STR, _NULL, _BOOL):
        _check_tag(node, _STR)


def _check_keys(node: Any) -> None:
    seen: dict[tuple[str, object], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # SafeConstructor refuses a list or mapping as a key itself
        key: tuple[str, object] = (key_node.tag, key_node.value)
        if key_node.tag == _BOOL:
            key = (_BOOL, yaml.SafeLoader.bool_values.get(key_node.value.lower()))
        if key in seen:
            fix = "merge them: <<: [*a, *b]" if key_node.tag == _MERGE else "keep one"
            raise _YamlRefused(
                f"{key_node.value!r} appears twice in this mapping "
                f"(first on line {seen[key] + 1}): {fix}.",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line


_ChatbotLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _NOT_TEXT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ChatbotLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def is_chatbot_file(ref: str | Path) -> bool:
    """A `--chatbot` value naming a file (a path, or a .yaml name) rather than a registered id."""
    text = str(ref)
    return Path(text).is_file() or text.endswith((".yaml", ".yml")) or "/" in text


def load_chatbot(path: Path | str) -> Chatbot:
    """Read and check a chatbot YAML file; every problem at once, naming step and field."""
    path = Path(path)
    text = read_text_file(path, "chatbot file", ChatbotFileError)
    return parse_chatbot(_parse_yaml(text, path), source=str(path))


def _parse_yaml(text: str, path: Path) -> object:
    try:
        return yaml.load(text, Loader=_ChatbotLoader)  # noqa: S506  (a SafeLoader)
    except _YamlRefused as exc:
        raise ChatbotError(f"{path}, line {exc.mark.line + 1}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p) or str(exc)
        lines = text.splitlines()
        line = lines[mark.line] if mark and mark.line < len(lines) else ""
        # An unquoted `say: {NAME} ...` is a YAML flow mapping: the usual first-day mistake.
        hint = ' (a message with "{" must be in quotes: say: "{NAME} ...")' if "{" in line else ""
        raise ChatbotError(f"{path}: is not valid YAML{at}: {what}{hint}") from None
    except yaml.YAMLError as exc:
        raise ChatbotError(f"{path}: is not valid YAML: {exc}") from None
    except RecursionError:
        # The depth bound should make this unreachable; a message still beats a traceback.
        raise ChatbotError(f"{path}: is nested too deeply to be a chatbot.") from None
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        # PyYAML's constructors raise these on values their resolvers accepted (explicit tags
        # we did not foresee); the author still gets the file named instead of a traceback.
        raise ChatbotError(f"{path}: is not a chatbot file this tool can read ({exc}).") from None


def parse_chatbot(raw: object, source: str = "<chatbot>") -> Chatbot:
    if not isinstance(raw, dict):
        raise ChatbotError(f"{source}: a chatbot is a YAML mapping with id, language, steps...")
    try:
        bot = Chatbot.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_structure_problem(e)}" for e in exc.errors()]
        raise ChatbotError("\n".join(lines)) from None
    problems = [f"{source}: {p}" for p in chatbot_problems(bot)]
    if problems:
        raise ChatbotError("\n".join(problems))
    return bot.model_copy(update={"language": canonical_language(bot.language)})


_FIELDS = {
    "chatbot": ", ".join(Chatbot.model_fields),
    "step": ", ".join(Step.model_fields),
    "reply": ", ".join(Reply.model_fields),
}


def _structure_problem(error: Any) -> str:
    """One pydantic error as `path: problem`, in the words of a chatbot author."""
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind, value = error["type"], error.get("input")
    if loc and loc[-1] == "[key]":
        # A key YAML read as null or a boolean (`null:`, `true:`); pydantic's location shows it
        # as an index, so name the mapping and the key instead.
        key = json.dumps(value)  # as YAML wrote it: null, true
        return f"{field_path(*loc[:-2])}: the key {key} must be text: put it in quotes."
    path = field_path(*loc)
    if kind == "extra_forbidden":
        owner = _owner(loc[:-1])
        return f"{path}: is not a field of a {owner} (its fields: {_FIELDS[owner]})."
    if kind == "missing":
        return f"{path}: missing: every {_owner(loc[:-1])} needs it."
    if loc[-1] in ("say", "otherwise"):
        if kind in ("string_too_short", "string_pattern_mismatch"):
            return f"{path}: a message can't be empty or blank: it would still be sent and billed."
        if kind == "string_type" and isinstance(value, dict):
            return (
                f'{path}: a message that starts with "{{" must be in quotes, or YAML reads it '
                f'as a mapping: write {loc[-1]}: "{{NAME}} ...".'
            )
    return f"{path}: {error['msg']}."


def _owner(loc: tuple[str | int, ...]) -> str:
    """What the mapping at `loc` is: the chatbot (), a step (steps, id) or a reply (..., i)."""
    return "chatbot" if not loc else "reply" if "replies" in loc else "step"


def chatbot_problems(bot: Chatbot) -> list[str]:
    """Every inconsistency in a structurally valid chatbot, as `path: problem` for its author."""
    problems: list[str] = []
    try:
        canonical_language(bot.language)
    except ValueError as exc:
        problems.append(f"language: {exc}")
    if not CHATBOT_ID.match(bot.id):
        problems.append(
            f"id: {bot.id!r} must be lowercase letters, digits, '-' or '_' "
            "(it is used in commands and file names)."
        )
    declared = bot.custom_data
    seen: set[str] = set()
    for i, uid in enumerate(declared):
        where = field_path("custom_data", i)
        if uid == CONTACT_HEADER:
            problems.append(f"{where}: CONTACT is the phone column; it can't be a Custom Data ID.")
        elif not UNIQUE_ID.match(uid):
            hint = re.sub(r"[^A-Z0-9_]", "_", uid.upper())
            problems.append(f"{where}: Unique ID {uid!r} must be UPPER_SNAKE (e.g. {hint!r}).")
        if uid in seen:
            problems.append(f"{where}: Unique ID {uid!r} is listed twice.")
        seen.add(uid)

    used: set[str] = set()
    for step_id, field, text in bot.messages():
        found, names = _placeholder_problems(text, declared)
        used |= names
        problems += [f"{field_path('steps', step_id, field)}: {p}" for p in found]
    for i, uid in enumerate(declared):
        if uid not in used and uid != CONTACT_HEADER:
            problems.append(
                f"{field_path('custom_data', i)}: {uid} is declared but no message uses "
                f"{{{uid}}}: remove it or use it, so contact files don't need a useless column."
            )

    if bot.start not in bot.steps:
        problems.append(f"start: {bot.start!r} is not a step ({_names(bot.steps)}).")
    for step_id, step in bot.steps.items():
        options: set[str] = set()
        for i, option in enumerate(step.replies):
            where = field_path("steps", step_id, "replies", i)
            if option.goto not in bot.steps:
                problems.append(
                    f"{where}.goto: {option.goto!r} is not a step ({_names(bot.steps)})."
                )
            keys: dict[str, int] = {}
            for j, word in enumerate(option.when):
                keys.setdefault(normalize_reply(word), j)
            if "" in keys:
                problems.append(f"{where}.when[{keys['']}]: an empty answer can't be matched.")
            for key in sorted(keys.keys() & options, key=keys.__getitem__):
                j = keys[key]
                problems.append(
                    f"{where}.when[{j}]: {option.when[j]!r} is already an answer of an "
                    "earlier option."
                )
            options |= keys.keys()
        if step.otherwise is not None and step.is_final:
            problems.append(
                f"{field_path('steps', step_id, 'otherwise')}: a step without replies ends the "
                "conversation, so its 'otherwise' would never be sent."
            )
    if bot.start in bot.steps:
        reachable = _reachable(bot)
        # In definition order, so the same file always gives the same report.
        for step_id in [s for s in bot.steps if s not in reachable]:
            problems.append(
                f"{field_path('steps', step_id)}: unreachable: no 'start' or 'goto' leads to it."
            )
    return problems


def _placeholder_problems(text: str, declared: list[str]) -> tuple[list[str], set[str]]:
    """Problems with a message's placeholders and braces, and the Unique IDs it means to use.

    A malformed placeholder whose intent is clear (`{ NAME }`) counts as a use of NAME, so the
    author is told to fix the placeholder, not also that NAME is unused.
    """
    problems: list[str] = []
    used: set[str] = set()
    ids = ", ".join(declared) or "none"
    for match in _BRACES.finditer(text):
        token = match.group()
        if token.startswith("{{") and token.endswith("}}"):
            inner = token[2:-2].strip()
            problems.append(f"{_quote(token)} has double braces: {_fix(inner, declared, used)}.")
        elif token.startswith("{") and token.endswith("}") and len(token) > 1:
            inner = token[1:-1]
            if _NAME.fullmatch(inner):
                used.add(inner)
                if inner not in declared:
                    suggestion = _suggest(inner, declared)
                    fix = (
                        f"write {{{suggestion}}}"
                        if suggestion
                        else "add it to custom_data (in UPPER_SNAKE) or correct it"
                    )
                    problems.append(
                        f"placeholder {{{inner}}} is not a declared Custom Data Unique ID "
                        f"(declared: {ids}): {fix}."
                    )
            elif not inner.strip():
                problems.append(
                    f"{_quote(token)} is an empty placeholder: write {{UNIQUE_ID}} with one of "
                    f"custom_data ({ids}), or remove the braces."
                )
            elif _NAME.fullmatch(inner.strip()):
                problems.append(
                    f"{_quote(token)} has spaces inside the braces: "
                    f"{_fix(inner.strip(), declared, used)}."
                )
            else:
                problems.append(
                    f"{_quote(token)} is not a placeholder: {_fix(inner, declared, used)}."
                )
        elif token == "{":
            word = _NAME.match(text, match.end())
            after = PLACEHOLDER.match(text, match.end())
            if after:  # `{{NAME}`
                problems.append(
                    f"{_quote('{' + after.group())} has an extra '{{': "
                    f"{_fix(after.group(1), declared, used)}."
                )
            elif word:
                problems.append(
                    f"{_quote('{' + word.group())} has no closing '}}': "
                    f"{_fix(word.group(), declared, used)}."
                )
            else:
                problems.append(f"a '{{' that opens no placeholder; {_BRACES_ARE_PLACEHOLDERS}.")
        else:
            before = re.search(r"[A-Za-z0-9_]+$", text[: match.start()])
            word = _NAME.fullmatch(before.group()) if before else None
            placeholder = re.search(PLACEHOLDER.pattern + "$", text[: match.start()])
            if placeholder:  # `{NAME}}`
                problems.append(
                    f"{_quote(placeholder.group() + '}')} has an extra '}}': "
                    f"{_fix(placeholder.group(1), declared, used)}."
                )
            elif word:
                problems.append(
                    f"{_quote(word.group() + '}')} has no opening '{{': "
                    f"{_fix(word.group(), declared, used)}."
                )
            else:
                problems.append(f"a '}}' that closes no placeholder; {_BRACES_ARE_PLACEHOLDERS}.")
    return problems, used


def _suggest(word: str, declared: list[str]) -> str | None:
    """The declared Unique ID `word` was meant as (`name`, `Due date` → NAME, DUE_DATE), if any."""
    guess = re.sub(r"[^A-Za-z0-9]+", "_", word).strip("_").upper()
    return guess if guess in declared else None


def _fix(word: str, declared: list[str], used: set[str]) -> str:
    suggestion = _suggest(word, declared)
    if suggestion:
        used.add(suggestion)
        return f"write {{{suggestion}}}"
    ids = ", ".join(declared) or "none declared"
    return f"write {{UNIQUE_ID}} with one of custom_data ({ids}); {_BRACES_ARE_PLACEHOLDERS}"


def _quote(token: str) -> str:
    # A runaway `{` can swallow a whole paragraph; the start is enough to find it.
    return repr(token if len(token) <= 40 else token[:37] + "...")


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
