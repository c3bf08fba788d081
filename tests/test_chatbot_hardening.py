"""What new users hit with chatbot files: each case is a real YAML file loaded from disk."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.chatbot import (
    MAX_DEPTH,
    check_message_lengths,
    field_path,
    fixed_text,
    load_chatbot,
)
from smartchat.errors import ChatbotError, ChatbotFileError

BOT = """\
id: survey
name: Survey
language: en
custom_data: [NAME, DUE_DATE]
start: ask
steps:
  ask:
    say: "Hi {NAME}, will you pay by {DUE_DATE}? YES or NO"
    replies:
      - when: [yes, y]
        goto: good
      - when: [no, n]
        goto: bad
    otherwise: "Please answer YES or NO."
  good:
    say: "Great!"
  bad:
    say: "Sorry, {NAME}."
"""


def write(tmp_path: Path, text: str, name: str = "bot.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ChatbotError) as info:
        load_chatbot(path)
    assert not isinstance(info.value, ChatbotFileError)  # readable, but wrong: exit 1, not 2
    message = info.value.message
    assert all(line.startswith(str(path)) for line in message.splitlines()), message
    return message


def with_bad_say(text: str) -> str:
    """BOT with step `bad` saying `text` (YAML-quoted)."""
    return BOT.replace('"Sorry, {NAME}."', '"' + text.replace('"', '\\"') + '"')


# --- 1. placeholders and braces ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Sorry, { NAME }.", "'{ NAME }' has spaces inside the braces: write {NAME}."),
        ("Sorry, {NAME }.", "'{NAME }' has spaces inside the braces: write {NAME}."),
        ("Sorry, {{NAME}}.", "'{{NAME}}' has double braces: write {NAME}."),
        ("Sorry, {{NAME}.", "'{{NAME}' has an extra '{': write {NAME}."),
        ("Sorry, {NAME}}.", "'{NAME}}' has an extra '}': write {NAME}."),
        ("Sorry, {NAME.", "'{NAME' has no closing '}': write {NAME}."),
        ("Sorry, NAME}.", "'NAME}' has no opening '{': write {NAME}."),
        (
            "Sorry, {name}.",
            "placeholder {name} is not a declared Custom Data Unique ID "
            "(declared: NAME, DUE_DATE): write {NAME}.",
        ),
        ("Sorry, {Name}.", "placeholder {Name} is not a declared"),
        ("Sorry {NAME}, due {due date}.", "'{due date}' is not a placeholder: write {DUE_DATE}."),
        (
            "Sorry, {}. {NAME}",
            "'{}' is an empty placeholder: write {UNIQUE_ID} with one of custom_data "
            "(NAME, DUE_DATE), or remove the braces.",
        ),
    ],
)
def test_malformed_placeholders_are_refused_with_the_fix(tmp_path, text, fragment):
    message = refusal(tmp_path, with_bad_say(text))
    assert f"steps.bad.say: {fragment}" in message
    # The intent was clear: the author is not also told NAME is unused.
    assert "NAME is declared but no message uses" not in message


@pytest.mark.parametrize("text", ["Sorry {NAME} :-}", "Sorry {NAME} {1}", "Sorry {NAME} x { y"])
def test_a_brace_that_is_no_placeholder_is_refused_and_the_alternative_named(tmp_path, text):
    message = refusal(tmp_path, with_bad_say(text))
    assert "steps.bad.say:" in message
    assert "braces only mark placeholders (for text, write ( ) instead)" in message


def test_brace_problems_in_otherwise_name_that_field(tmp_path):
    message = refusal(tmp_path, BOT.replace('"Please answer YES or NO."', '"Answer {YES/NO}"'))
    assert "steps.ask.otherwise: '{YES/NO}' is not a placeholder" in message


def test_unquoted_message_starting_with_a_brace_gets_the_quoting_hint(tmp_path):
    whole = refusal(tmp_path, BOT.replace('"Sorry, {NAME}."', "{NAME}"))
    assert 'steps.bad.say: a message that starts with "{" must be in quotes' in whole
    partial = refusal(tmp_path, BOT.replace('"Sorry, {NAME}."', "{NAME}, sorry."))
    assert "not valid YAML at line 18" in partial and "must be in quotes" in partial


def test_well_formed_placeholders_render_and_leave_no_braces(tmp_path):
    bot = load_chatbot(write(tmp_path, with_bad_say("{NAME}, {NAME}: due {DUE_DATE}.")))
    rendered = bot.render(bot.steps["bad"].say, {"NAME": "Ana", "DUE_DATE": "1 May"})
    assert rendered == "Ana, Ana: due 1 May."


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="{} NAMEnae_DU1", min_size=1, max_size=12))
def test_an_accepted_message_sends_no_brace(tmp_path_factory, text):
    path = write(tmp_path_factory.mktemp("bot"), with_bad_say(text))
    try:
        bot = load_chatbot(path)
    except ChatbotError:
        return
    assert not re.search("[{}]", fixed_text(bot.steps["bad"].say))


# --- 2. fixed text over the SMS limit --------------------------------------------------------


def test_fixed_text_over_the_limit_is_the_chatbots_fault_not_the_contacts(tmp_path):
    long = "x" * 1_760
    path = write(tmp_path, with_bad_say(long + " {NAME}"))
    bot = load_chatbot(path)  # loading doesn't know the configured limit
    with pytest.raises(ChatbotError) as info:
        check_message_lengths(bot, 1_600, source=str(path))
    assert info.value.message == (
        f"{path}: steps.bad.say: its fixed text alone (without placeholders) is 1,761 "
        "characters, over the limit of 1,600 per message: shorten it (no contact's data can "
        "make it fit)."
    )


def test_placeholders_do_not_count_toward_the_fixed_text(tmp_path):
    bot = load_chatbot(write(tmp_path, with_bad_say("y" * 1_594 + "{NAME}")))
    assert len(bot.steps["bad"].say) == 1_600
    check_message_lengths(bot, 1_594)  # exactly at the limit: each contact's data decides
    with pytest.raises(ChatbotError, match="1,594 characters, over the limit of 1,593"):
        check_message_lengths(bot, 1_593)


def test_every_long_message_is_named_at_once(tmp_path):
    text = BOT.replace("Great!", "é" * 200).replace("Please answer YES or NO.", "😀" * 161)
    bot = load_chatbot(write(tmp_path, text))
    with pytest.raises(ChatbotError) as info:
        check_message_lengths(bot, 160)
    lines = info.value.message.splitlines()
    # Characters, as the contact check counts them: an emoji or an accented letter is one.
    assert [line.split(":")[0] for line in lines] == ["steps.ask.otherwise", "steps.good.say"]
    assert "is 161 characters" in lines[0] and "is 200 characters" in lines[1]


def test_a_limit_below_one_is_a_programming_error(tmp_path):
    bot = load_chatbot(write(tmp_path, BOT))
    with pytest.raises(ValueError, match="at least 1"):
        check_message_lengths(bot, 0)


# --- 3. anchors, aliases and merge keys ------------------------------------------------------

SHARED = """\
id: survey
name: Survey
language: en
custom_data: [NAME, DUE_DATE]
start: ask
steps:
  ask:
    say: "Hi {NAME}, will you pay by {DUE_DATE}? YES or NO"
    <<: &yesno
      replies:
        - when: &yes [yes, y]
          goto: good
        - when: [no, n]
          goto: bad
      otherwise: "Please answer YES or NO."
  again:
    say: "{NAME}, once more: YES or NO?"
    <<: *yesno
    otherwise: "Just YES or NO, please."   # overrides the merged one
  good:
    say: "Great!"
  bad:
    say: "Sorry. Shall we ask again? YES to go on"
    replies:
      - when: *yes
        goto: again
"""

EXPANDED = """\
id: survey
name: Survey
language: en
custom_data: [NAME, DUE_DATE]
start: ask
steps:
  ask:
    say: "Hi {NAME}, will you pay by {DUE_DATE}? YES or NO"
    replies:
      - {when: [yes, y], goto: good}
      - {when: [no, n], goto: bad}
    otherwise: "Please answer YES or NO."
  again:
    say: "{NAME}, once more: YES or NO?"
    replies:
      - {when: [yes, y], goto: good}
      - {when: [no, n], goto: bad}
    otherwise: "Just YES or NO, please."
  good:
    say: "Great!"
  bad:
    say: "Sorry. Shall we ask again? YES to go on"
    replies:
      - {when: [yes, y], goto: again}
"""


def test_merge_keys_and_aliases_share_reply_options(tmp_path):
    bot = load_chatbot(write(tmp_path, SHARED))
    assert bot.steps["again"].replies == bot.steps["ask"].replies
    option = bot.steps["again"].match("YES")
    assert option is not None and option.goto == "good"
    assert bot.steps["ask"].otherwise == "Please answer YES or NO."
    assert bot.steps["again"].otherwise == "Just YES or NO, please."
    # The same definition written out in full is the same version.
    assert bot.content_hash == load_chatbot(write(tmp_path, EXPANDED, "full.yaml")).content_hash


def test_aliases_are_no_loophole_for_the_checks(tmp_path):
    text = SHARED.replace(
        "        goto: again\n", "        goto: again\n      - when: *yes\n        goto: ask\n"
    )
    message = refusal(tmp_path, text)
    assert (
        "steps.bad.replies[1].when[0]: 'yes' is already an answer of an earlier option" in message
    )


def test_duplicate_keys_are_still_refused_next_to_merge_keys(tmp_path):
    text = SHARED.replace(
        '    otherwise: "Just YES or NO, please."',
        '    otherwise: "Just YES or NO, please."\n    say: "Twice"',
    )
    message = refusal(tmp_path, text)
    assert "line 20: 'say' appears twice in this mapping (first on line 17): keep one." in message


def test_duplicate_key_inside_an_anchored_mapping_is_refused(tmp_path):
    text = SHARED.replace(
        '      otherwise: "Please answer YES or NO."',
        '      otherwise: "Please answer YES or NO."\n      otherwise: "again"',
    )
    assert "'otherwise' appears twice" in refusal(tmp_path, text)


def test_two_merge_keys_in_one_mapping_are_refused_with_the_yaml_way(tmp_path):
    text = SHARED.replace("    <<: *yesno\n", "    <<: *yesno\n    <<: *yesno\n")
    assert "'<<' appears twice" in refusal(tmp_path, text)
    assert "<<: [*a, *b]" in refusal(tmp_path, text)


def test_yaml_11_numbers_dates_and_yes_no_stay_as_typed(tmp_path):
    text = BOT.replace("[yes, y]", "[1:30, 007, 2024-01-31, 2024-13-45, 1e3, .inf, '=', on]")
    bot = load_chatbot(write(tmp_path, text))
    assert bot.steps["ask"].replies[0].when == [
        "1:30",
        "007",
        "2024-01-31",
        "2024-13-45",
        "1e3",
        ".inf",
        "=",
        "on",
    ]


# --- 4. hostile or broken YAML: a message, never a traceback -----------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "id: " + "[" * 1_000 + "]" * 1_000 + "\n",
        "id: " + "[" * 1_000_000 + "\n",
        "id: " + "{a: " * 1_000 + "}" * 1_000 + "\n",
        "".join("  " * i + f"k{i}:\n" for i in range(1_000)),
    ],
    ids=["brackets", "unclosed-million", "flow-mappings", "block-mappings"],
)
def test_deep_nesting_is_refused_with_the_line(tmp_path, text):
    started = time.perf_counter()
    message = refusal(tmp_path, text)
    assert time.perf_counter() - started < 5
    assert re.search(rf", line \d+: nested more than {MAX_DEPTH} levels deep", message)


def test_nesting_deep_through_aliases_is_refused(tmp_path):
    level = "[" * 20 + "{}" + "]" * 20
    lines = [f"a0: &a0 {level}"]
    lines += [f"a{i}: &a{i} {level.replace('{}', f'*a{i - 1}')}" for i in range(1, 6)]
    message = refusal(tmp_path, "\n".join(lines) + "\n")
    assert "nested (through aliases, *name) more than" in message


def test_billion_laughs_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    started = time.perf_counter()
    message = refusal(tmp_path, "\n".join(lines) + "\n")
    assert time.perf_counter() - started < 2
    assert ", line 5: this holds more than 100,000 values (counting every use" in message


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    message = refusal(tmp_path, BOT.replace("when: [yes, y]", "when: &loop [yes, *loop]"))
    assert ", line 10: an alias (*name) is used inside the anchor (&name)" in message


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object/apply:os.system [ls]", "!!python/object/apply:os.system"),
        ("!!int 12", "!!int"),
        ("!!bool maybe", "!!bool"),
        ("!!timestamp 2024-13-45", "!!timestamp"),
        ("!custom x", "!custom"),
    ],
)
def test_tags_are_refused(tmp_path, value, tag):
    message = refusal(tmp_path, BOT.replace('"Great!"', value))
    assert f", line 16: the tag {tag} is not used in a chatbot file" in message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="[]{}:,-&*!<|>'\"#\n abn0.%@?", max_size=60))
def test_any_text_loads_or_is_refused_with_a_chatbot_error(tmp_path_factory, text):
    path = write(tmp_path_factory.mktemp("fuzz"), text)
    try:
        load_chatbot(path)
    except ChatbotError as exc:
        assert exc.message.startswith(str(path))


# --- 5. one path style -------------------------------------------------------------------------


def test_field_path_style():
    assert field_path("steps", "ask", "replies", 1, "when") == "steps.ask.replies[1].when"
    assert field_path("custom_data", 0) == "custom_data[0]"
    assert field_path("steps", "my step", "say") == 'steps["my step"].say'
    assert field_path("steps", "a.b") == 'steps["a.b"]'


def test_every_message_uses_dotted_paths_with_bracketed_indices(tmp_path):
    text = (
        BOT.replace("id: survey", "id: Survey!")
        .replace("[NAME, DUE_DATE]", "[NAME, DUE_DATE, CONTACT, due]")
        .replace("goto: bad", "goto: nowhere")
        .replace("when: [no, n]", "when: [no, Y]")
        .replace('    say: "Great!"', '    say: "Great!"\n    otherwise: "never"')
        .replace("  bad:\n", '  my step:\n    say: "hi"\n    extra: 1\n  bad:\n')
    )
    lines = refusal(tmp_path, text).splitlines()
    paths = [line.split(": ")[1] for line in lines]
    assert 'steps["my step"].extra' in paths
    text = text.replace("    extra: 1\n", "")
    lines = refusal(tmp_path, text).splitlines()
    paths = [line.split(": ")[1] for line in lines]
    assert paths == [
        "id",
        "custom_data[2]",
        "custom_data[3]",
        "custom_data[3]",
        "steps.ask.replies[1].goto",
        "steps.ask.replies[1].when[1]",
        "steps.good.otherwise",
        'steps["my step"]',
        "steps.bad",
    ]
    for line in lines:
        assert "step '" not in line and "field '" not in line
        path = line.split(": ")[1]
        assert re.fullmatch(r'[a-z_]+(\.[A-Za-z0-9_-]+|\[\d+\]|\["[^"]*"\])*', path), path


def test_structure_errors_use_the_same_paths(tmp_path):
    message = refusal(
        tmp_path, BOT.replace("when: [no, n]", "when: []").replace("goto: good", "goto: [good]")
    )
    assert "steps.ask.replies[0].goto: Input should be a valid string." in message
    assert "steps.ask.replies[1].when: List should have at least 1 item" in message
