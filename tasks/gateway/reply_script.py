"""The reply script: how the sandbox's pretend contacts behave, in a YAML file a person writes.

```yaml
replies:                        # tried in order for every message a number receives
  - number: "+522221234567"     # who: an E.164 number, a prefix ending in * ("+52*"), "*" for
                                #   everyone, or a list of these
    share: 0.3                  # optional: only this fraction of those numbers (always the same
                                #   ones: a hash of the number picks them)
    after: 1                    # optional: answer the Nth message the number receives
    after_text: "SI o NO"       # optional: answer a message containing this (case and accents
                                #   ignored); with neither, any message: with `times` 1, the first
    delay: 2s                   # after the message is delivered: 2, 2.5, "2s", "500ms", "1m"
                                #   (default 1 second)
    say: "SI"                   # the reply; a list: one of them, the same for a number every run
    times: 1                    # how often this rule answers one number (default 1)
fail:                           # messages to these numbers are not delivered
  - number: "+12015550144"      # same forms as above, `share` too
    status: undelivered         # undelivered (sent, then not delivered: the default) or failed
    error_code: 30005           # Twilio's code (default 30003 undelivered, 30008 failed)
unsolicited:                    # texts from numbers nobody wrote to, once per run, this long
  - from: "+525599990000"       #   after the sandbox accepts its first message
    say: "Hola, ¿quién es?"
    delay: 3s
```

A message that fails gets no reply. The first reply rule that matches a message answers it; a rule
that has answered a number `times` times lets the next rules try. Every value is read as text
first (`say: no` is the word "no", `say: 1` the digit a contact types), then checked; a file with
mistakes is refused as a whole, each mistake named by file, line and field.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from schemas.text_files import read_text_file
from smartchat.errors import SmartChatError

FailStatus = Literal["undelivered", "failed"]
DEFAULT_ERROR_CODES: dict[str, int] = {"undelivered": 30003, "failed": 30008}
DEFAULT_DELAY = 1.0

_PATTERN = re.compile(r"^(?:\*|\+[1-9]\d{0,14}|\+\d{0,14}\*)$")
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m)?$")
_DELAY_UNITS: dict[str | None, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
_REPLY_FIELDS = ("number", "share", "after", "after_text", "delay", "say", "times")
_FAIL_FIELDS = ("number", "share", "status", "error_code")
_UNSOLICITED_FIELDS = ("from", "say", "delay")
_TOP_FIELDS = ("replies", "fail", "unsolicited")


@dataclass(frozen=True)
class Reply:
    """What a contact answers, and how long after the message was delivered."""

    body: str
    delay: float


@dataclass(frozen=True)
class ReplyRule:
    numbers: tuple[str, ...]
    say: tuple[str, ...]
    share: float | None = None
    after: int | None = None
    after_text: str | None = None
    delay: float = DEFAULT_DELAY
    times: int = 1
    line: int = 0

    def pick(self, number: str) -> str:
        if len(self.say) == 1:
            return self.say[0]
        return self.say[int(_hash_point(f"say:{self.line}", number) * len(self.say))]


@dataclass(frozen=True)
class FailRule:
    numbers: tuple[str, ...]
    status: FailStatus = "undelivered"
    error_code: int = DEFAULT_ERROR_CODES["undelivered"]
    share: float | None = None

    def matches(self, number: str) -> bool:
        return matches_any(self.numbers, number) and (
            self.share is None or _hash_point("fail", number) < self.share
        )


@dataclass(frozen=True)
class Unsolicited:
    """A text from a number nobody wrote to: the receiver keeps it as unsolicited."""

    number: str
    body: str
    delay: float


@dataclass(frozen=True)
class ReplyScript:
    replies: tuple[ReplyRule, ...] = ()
    fail: tuple[FailRule, ...] = ()
    unsolicited: tuple[Unsolicited, ...] = ()
    source: str = field(default="<reply script>", compare=False)


class ReplyPlayer:
    """The script played against the messages of one sandbox run (it counts what each number got).

    The sandbox calls `on_delivered` once per message that will be delivered, in sending order.
    """

    def __init__(self, script: ReplyScript) -> None:
        self.script = script
        self._received: dict[str, int] = {}
        self._answered: dict[tuple[int, str], int] = {}

    def on_delivered(self, number: str, body: str) -> Reply | None:
        nth = self._received[number] = self._received.get(number, 0) + 1
        folded: str | None = None
        for index, rule in enumerate(self.script.replies):
            if not matches_any(rule.numbers, number):
                continue
            if rule.share is not None and _hash_point("reply", number) >= rule.share:
                continue
            if rule.after is not None and rule.after != nth:
                continue
            if rule.after_text is not None:
                folded = fold(body) if folded is None else folded
                if rule.after_text not in folded:
                    continue
            key = (index, number)
            if self._answered.get(key, 0) >= rule.times:
                continue
            self._answered[key] = self._answered.get(key, 0) + 1
            return Reply(rule.pick(number), rule.delay)
        return None


def matches_any(patterns: tuple[str, ...], number: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == number:
            return True
        if pattern.endswith("*") and number.startswith(pattern[:-1]):
            return True
    return False


def fail_rule_for(rules: tuple[FailRule, ...], number: str) -> FailRule | None:
    return next((rule for rule in rules if rule.matches(number)), None)


def fail_rules_from_patterns(patterns: tuple[str, ...], source: str) -> tuple[FailRule, ...]:
    """`--fail-number` style patterns: each one fails as undelivered with error 30003."""
    bad = [p for p in patterns if not _PATTERN.match(p)]
    if bad:
        raise SmartChatError(f"{source}: {bad[0]!r} is not a number pattern. {_PATTERN_HELP}")
    return (FailRule(numbers=patterns),) if patterns else ()


def fold(text: str) -> str:
    """Case, accents and runs of spaces ignored: how a person compares two texts."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def _hash_point(salt: str, number: str) -> float:
    """A number's fixed place in [0, 1): `share: 0.3` is the numbers below 0.3 (so a share of 0.3
    is inside a share of 0.5), the same on every run and machine."""
    digest = hashlib.blake2b(f"{salt}:{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


# --- reading the file ---------------------------------------------------------------------------

_PATTERN_HELP = (
    'Write an E.164 number ("+522221234567"), a prefix ending in * ("+52*"), or "*" for everyone.'
)


def load_reply_script(path: Path | str) -> ReplyScript:
    """Read and check a reply script; SmartChatError naming file, line and field if it is wrong."""
    path = Path(path)
    return parse_reply_script(read_text_file(path, "reply script"), source=str(path))


def parse_reply_script(text: str, source: str = "<reply script>") -> ReplyScript:
    try:
        raw = yaml.load(text, Loader=_ScriptLoader)  # noqa: S506  (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SmartChatError(f"{source}{where}: not valid YAML: {problem}") from None
    if raw is None or raw == "":
        raise SmartChatError(f"{source}: the reply script is empty: write `replies:` or `fail:`.")
    if not isinstance(raw, _Map):
        raise SmartChatError(f"{source}, line 1: a reply script is a mapping with `replies:`...")
    reader = _Reader(source)
    reader.unknown_keys(raw, _TOP_FIELDS, "")
    replies = tuple(
        rule
        for index, item in reader.items(raw, "replies")
        if (rule := reader.reply_rule(item, f"replies[{index}]")) is not None
    )
    fail = tuple(
        failing
        for index, item in reader.items(raw, "fail")
        if (failing := reader.fail_rule(item, f"fail[{index}]")) is not None
    )
    unsolicited = tuple(
        texted
        for index, item in reader.items(raw, "unsolicited")
        if (texted := reader.unsolicited(item, f"unsolicited[{index}]")) is not None
    )
    if reader.problems:
        raise SmartChatError("\n".join(reader.problems))
    return ReplyScript(replies=replies, fail=fail, unsolicited=unsolicited, source=source)


class _Map(dict[str, Any]):
    """A YAML mapping that remembers where it and each of its keys are (1-based lines)."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}


class _Seq(list[Any]):
    def __init__(self, line: int, item_lines: list[int]) -> None:
        super().__init__()
        self.line = line
        self.item_lines = item_lines


class _ScriptLoader(yaml.SafeLoader):  # type: ignore[misc]  # (PyYAML ships no types)
    """Safe YAML where every scalar stays the text the person wrote.

    YAML 1.1 would turn `no` into False, `010` into 8 and `1:30` into 90; in a reply script they
    are what a contact types. Numbers are parsed by the checks below, which can say what's wrong.
    """

    yaml_implicit_resolvers: dict[str, Any] = {}


def _construct_map(loader: Any, node: Any) -> _Map:
    result = _Map(node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain name", key_node.start_mark
            )
        if key in result:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{key!r} appears twice (first on line {result.key_lines[key]}): keep one",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


def _construct_seq(loader: Any, node: Any) -> _Seq:
    result = _Seq(node.start_mark.line + 1, [item.start_mark.line + 1 for item in node.value])
    result.extend(loader.construct_object(item, deep=True) for item in node.value)
    return result


_ScriptLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_ScriptLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


class _Reader:
    """Checks the raw YAML, collecting every problem with its line before anything is refused."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, line: int, field: str, message: str) -> None:
        self.problems.append(f"{self.source}, line {line}, field '{field}': {message}")

    def unknown_keys(self, node: _Map, allowed: tuple[str, ...], prefix: str) -> None:
        for key in node:
            if key not in allowed:
                near = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                known = ", ".join(allowed)
                self.problem(node.key_lines[key], prefix + key, f"unknown field{hint}: use {known}")

    def items(self, node: _Map, key: str) -> list[tuple[int, _Map]]:
        if key not in node:
            return []
        value, line = node[key], node.key_lines[key]
        if value == "":
            return []
        if not isinstance(value, _Seq):
            self.problem(line, key, "must be a list of rules, each starting with `- number:`")
            return []
        good: list[tuple[int, _Map]] = []
        for index, (item, item_line) in enumerate(zip(value, value.item_lines, strict=True)):
            if isinstance(item, _Map):
                good.append((index, item))
            else:
                self.problem(item_line, f"{key}[{index}]", "must be a rule (`number:`, `say:`...)")
        return good

    def reply_rule(self, node: _Map, where: str) -> ReplyRule | None:
        before = len(self.problems)
        self.unknown_keys(node, _REPLY_FIELDS, f"{where}.")
        numbers = self.numbers(node, where)
        say = self.texts(node, where, "say")
        share = self.share(node, where)
        after = self.whole(node, where, "after")
        after_text = self.text(node, where, "after_text")
        delay = self.delay(node, where)
        times = self.whole(node, where, "times")
        if len(self.problems) > before or numbers is None or say is None:
            return None
        return ReplyRule(
            numbers=numbers,
            say=say,
            share=share,
            after=after,
            after_text=fold(after_text) if after_text is not None else None,
            delay=DEFAULT_DELAY if delay is None else delay,
            times=1 if times is None else times,
            line=node.line,
        )

    def unsolicited(self, node: _Map, where: str) -> Unsolicited | None:
        before = len(self.problems)
        self.unknown_keys(node, _UNSOLICITED_FIELDS, f"{where}.")
        number = node.get("from")
        if not isinstance(number, str) or not re.fullmatch(r"\+[1-9]\d{1,14}", number):
            line = node.key_lines.get("from", node.line)
            self.problem(line, f"{where}.from", "must be an E.164 number (+525599990000)")
        say = self.texts(node, where, "say")
        delay = self.delay(node, where)
        if len(self.problems) > before or say is None or not isinstance(number, str):
            return None
        return Unsolicited(number, say[0], DEFAULT_DELAY if delay is None else delay)

    def fail_rule(self, node: _Map, where: str) -> FailRule | None:
        before = len(self.problems)
        self.unknown_keys(node, _FAIL_FIELDS, f"{where}.")
        numbers = self.numbers(node, where)
        share = self.share(node, where)
        status: FailStatus = "undelivered"
        if "status" in node:
            value = node["status"]
            if value in ("undelivered", "failed"):
                status = value
            else:
                self.problem(
                    node.key_lines["status"],
                    f"{where}.status",
                    f"{value!r} is not a status: use undelivered or failed",
                )
        code = self.whole(node, where, "error_code", low=10000, high=99999)
        if len(self.problems) > before or numbers is None:
            return None
        return FailRule(
            numbers=numbers,
            status=status,
            error_code=DEFAULT_ERROR_CODES[status] if code is None else code,
            share=share,
        )

    def numbers(self, node: _Map, where: str) -> tuple[str, ...] | None:
        if "number" not in node:
            self.problem(
                node.line, f"{where}.number", f"missing: say whose rule it is. {_PATTERN_HELP}"
            )
            return None
        value, line = node["number"], node.key_lines["number"]
        values = list(value) if isinstance(value, _Seq) else [value]
        lines = value.item_lines if isinstance(value, _Seq) else [line]
        if not values:
            self.problem(line, f"{where}.number", f"an empty list. {_PATTERN_HELP}")
            return None
        ok = True
        for item, item_line in zip(values, lines, strict=True):
            if not isinstance(item, str) or not _PATTERN.match(item):
                self.problem(
                    item_line,
                    f"{where}.number",
                    f"{item!r} is not a number pattern. {_PATTERN_HELP}",
                )
                ok = False
        return tuple(values) if ok else None

    def texts(self, node: _Map, where: str, key: str) -> tuple[str, ...] | None:
        if key not in node:
            self.problem(node.line, f"{where}.{key}", "missing: write what the contact answers")
            return None
        value, line = node[key], node.key_lines[key]
        values = list(value) if isinstance(value, _Seq) else [value]
        lines = value.item_lines if isinstance(value, _Seq) else [line]
        ok = bool(values)
        if not values:
            self.problem(line, f"{where}.{key}", "an empty list: write at least one answer")
        for item, item_line in zip(values, lines, strict=True):
            if not isinstance(item, str) or not item.strip():
                self.problem(item_line, f"{where}.{key}", "must be a non-empty text")
                ok = False
            elif len(item) > 1600:
                self.problem(item_line, f"{where}.{key}", "longer than an SMS can be (1600)")
                ok = False
        return tuple(values) if ok else None

    def text(self, node: _Map, where: str, key: str) -> str | None:
        if key not in node:
            return None
        value = node[key]
        if not isinstance(value, str) or not value.strip():
            self.problem(node.key_lines[key], f"{where}.{key}", "must be a non-empty text")
            return None
        return value

    def whole(
        self, node: _Map, where: str, key: str, low: int = 1, high: int = 1_000_000
    ) -> int | None:
        if key not in node:
            return None
        value = node[key]
        if isinstance(value, str) and value.strip().isdigit() and low <= int(value) <= high:
            return int(value)
        self.problem(
            node.key_lines[key],
            f"{where}.{key}",
            f"{value!r} is not a whole number from {low} to {high}",
        )
        return None

    def share(self, node: _Map, where: str) -> float | None:
        if "share" not in node:
            return None
        value = node["share"]
        try:
            text = value.strip() if isinstance(value, str) else ""
            share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            share = -1.0
        if 0 < share <= 1:
            return share
        self.problem(
            node.key_lines["share"],
            f"{where}.share",
            f"{value!r} is not a share: above 0 and at most 1 (0.3), or a percentage (30%)",
        )
        return None

    def delay(self, node: _Map, where: str) -> float | None:
        if "delay" not in node:
            return None
        value = node["delay"]
        match = _DELAY.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            self.problem(
                node.key_lines["delay"],
                f"{where}.delay",
                f"{value!r} is not a delay: seconds (2, 0.5) or with a unit (500ms, 2s, 1m)",
            )
            return None
        return float(match.group(1)) * _DELAY_UNITS[match.group(2)]
