"""Loading and checking chatbot YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.chatbot import load_chatbot, normalize_reply
from smartchat.errors import ChatbotError

ROOT = Path(__file__).resolve().parents[1]
CHATBOT_YAML = ROOT / "data" / "payment-reminder.yaml"
ISSUE_EXAMPLE = ROOT / "data" / "payment-reminder.yaml"

VALID = """\
id: survey
name: Survey
language: en
custom_data: [NAME]
start: ask
steps:
  ask:
    say: "Hi {NAME}, happy? YES or NO"
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


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ChatbotError) as info:
        load_chatbot(write(tmp_path, text))
    return info.value.message


def test_issue_example_loads_as_is():
    bot = load_chatbot(ISSUE_EXAMPLE)
    assert (bot.id, bot.language, bot.start) == ("payment-reminder", "es", "ask")
    assert bot.custom_data == ["NAME", "DUE_DATE", "AMOUNT"]
    assert bot.steps["ask"].replies[1].when == ["no"]  # YAML's `no` stays the word "no"
    assert bot.steps["thanks"].is_final


def test_yes_no_words_are_not_booleans(tmp_path):
    bot = load_chatbot(write(tmp_path, VALID))
    assert bot.steps["ask"].replies[0].when == ["yes", "y"]
    assert bot.steps["ask"].match("  YES ").goto == "good"
    assert bot.steps["ask"].match("N").goto == "bad"
    assert bot.steps["ask"].match("maybe") is None


@pytest.mark.parametrize(
    ("reply", "expected"), [("Sí", "si"), ("  SI  ", "si"), ("sÍ", "si"), ("no  sé", "no se")]
)
def test_reply_matching_ignores_case_accents_and_spaces(reply, expected):
    assert normalize_reply(reply) == expected


def test_content_hash_ignores_layout_but_not_content(tmp_path):
    a = load_chatbot(write(tmp_path, VALID))
    b = load_chatbot(write(tmp_path, "# a comment\n" + VALID.replace('"Great!"', "'Great!'")))
    c = load_chatbot(write(tmp_path, VALID.replace("Great!", "Great!!")))
    assert a.content_hash == b.content_hash != c.content_hash


def test_undeclared_and_unused_placeholders(tmp_path):
    text = VALID.replace("custom_data: [NAME]", "custom_data: [NAME, DUE_DATE]").replace(
        "Great!", "Great {AMOUNT}!"
    )
    message = problems_of(tmp_path, text)
    assert "steps.good.say: placeholder {AMOUNT} is not a declared" in message
    assert "custom_data[1]: DUE_DATE is declared but no message uses {DUE_DATE}" in message
    assert str(tmp_path / "bot.yaml") in message


def test_lowercase_placeholder_is_reported_not_sent_literally(tmp_path):
    message = problems_of(tmp_path, VALID.replace("Sorry, {NAME}.", "Sorry, {name}."))
    assert "steps.bad.say: placeholder {name} is not a declared" in message
    assert "write {NAME}" in message


@pytest.mark.parametrize(
    ("ids", "fragment"),
    [
        ("[NAME, due_date]", "'due_date' must be UPPER_SNAKE"),
        ("[NAME, CONTACT]", "CONTACT is the phone column"),
        ("[NAME, NAME]", "listed twice"),
    ],
)
def test_unique_id_rules(tmp_path, ids, fragment):
    assert fragment in problems_of(tmp_path, VALID.replace("[NAME]", ids))


def test_goto_and_start_must_name_steps(tmp_path):
    message = problems_of(
        tmp_path, VALID.replace("goto: bad", "goto: nowhere").replace("start: ask", "start: begin")
    )
    assert "steps.ask.replies[1].goto: 'nowhere' is not a step" in message
    assert "start: 'begin' is not a step" in message


def test_unreachable_step(tmp_path):
    message = problems_of(tmp_path, VALID + '  orphan:\n    say: "never"\n')
    assert "steps.orphan: unreachable" in message


@pytest.mark.parametrize(
    ("language", "fragment"),
    [
        ("xx", "not a known language tag"),
        ("es_MX", "write 'es-MX'"),
    ],
)
def test_language_must_be_a_known_tag(tmp_path, language, fragment):
    assert fragment in problems_of(tmp_path, VALID.replace("language: en", f"language: {language}"))


@pytest.mark.parametrize("language", ["es", "pt-BR", "es-419", "en-US"])
def test_known_language_tags(tmp_path, language):
    bot = load_chatbot(write(tmp_path, VALID.replace("language: en", f"language: {language}")))
    assert bot.language == language


def test_structure_errors_name_step_and_field(tmp_path):
    message = problems_of(tmp_path, VALID.replace('say: "Great!"', 'sai: "Great!"'))
    assert "steps.good.sai: is not a field of a step" in message
    assert "steps.good.say: missing" in message


def test_unreadable_files(tmp_path):
    with pytest.raises(ChatbotError, match="no such chatbot file"):
        load_chatbot(tmp_path / "missing.yaml")
    with pytest.raises(ChatbotError, match="not valid YAML at line"):
        load_chatbot(write(tmp_path, "id: [unclosed\n"))


def test_missing_or_folder_chatbot_file_is_a_file_error(tmp_path):
    # The CLI exits 2 for ChatbotFileError (can't be read at all), 1 for other ChatbotErrors.
    from smartchat.errors import ChatbotFileError

    for path in (tmp_path / "missing.yaml", tmp_path):
        with pytest.raises(ChatbotFileError):
            load_chatbot(path)


def test_duplicate_keys_are_reported_not_silently_dropped(tmp_path):
    text = VALID + '  good:\n    say: "Again!"\n'
    message = problems_of(tmp_path, text)
    assert "'good' appears twice" in message and "line" in message


@pytest.mark.parametrize("text", ['""', '"   "'])
def test_empty_messages_are_refused(tmp_path, text):
    message = problems_of(tmp_path, VALID.replace('"Great!"', text))
    assert "steps.good.say: a message can't be empty or blank" in message


@pytest.mark.parametrize(
    ("tag", "canonical"), [("EN", "en"), ("pt-br", "pt-BR"), ("es-419", "es-419")]
)
def test_language_is_stored_in_canonical_form(tmp_path, tag, canonical):
    bot = load_chatbot(write(tmp_path, VALID.replace("language: en", f"language: {tag}")))
    assert bot.language == canonical


def test_unknown_region_is_refused(tmp_path):
    assert "'en-ZZ' is not a known language tag" in problems_of(
        tmp_path, VALID.replace("language: en", "language: en-ZZ")
    )


MENU = """
id: menu
name: Menu
language: en
start: ask
expire_after: 30m
max_misses: 2
steps:
  ask:
    say: "Will you pay on time? 1) Yes 2) No 3) Call me"
    replies:
      - when: ["yes", "y"]
        goto: thanks
        match: words
      - when: ["no"]
        goto: bye
      - when: ["call me"]
        goto: bye
        match: words
    otherwise: "Sorry, answer 1, 2 or 3."
  thanks:
    say: "Thanks!"
  bye:
    say: "Bye."
"""


@pytest.mark.parametrize(
    ("reply", "goto"),
    [
        ("2", "bye"),  # numbered: the message lists 1) 2) 3)
        (" 1 ", "thanks"),
        ("4", None),  # no fourth option
        ("yes of course", "thanks"),  # `match: words`: a few words around an answer
        ("please call me back", "bye"),
        ("yes call me", None),  # two options' answers: ambiguous, so the fallback
        ("no thanks", None),  # `no` is exact-only: "no sé si pueda" must not be a no
        ("well yes but it is really a very long sentence", None),  # more than a few words
    ],
)
def test_numbered_options_and_the_words_matcher(tmp_path, reply, goto):
    step = load_chatbot(write(tmp_path, MENU)).steps["ask"]
    option = step.match(reply)
    assert (option.goto if option else None) == goto


def test_numbers_match_only_when_the_message_lists_them(tmp_path):
    bot = load_chatbot(CHATBOT_YAML)
    assert bot.steps["ask"].match("1") is None  # "Responde SI o NO" lists no numbers


def test_expiry_and_miss_limit_and_their_defaults(tmp_path):
    menu = load_chatbot(write(tmp_path, MENU))
    assert (menu.expire_after, menu.max_misses) == (1800.0, 2)
    plain = load_chatbot(CHATBOT_YAML)
    assert (plain.expire_after, plain.max_misses) == (86400.0, 3)
    # Settings at their defaults don't change a definition's version.
    spelled = CHATBOT_YAML.read_text(encoding="utf-8") + "expire_after: 24h\nmax_misses: 3\n"
    assert load_chatbot(write(tmp_path, spelled)).content_hash == plain.content_hash
