"""The replies the sandbox plays when `smartchat run` is given no reply script.

Made from the chatbot, so any chatbot can be tried end to end: for each step that asks
something, most contacts answer with one of its options (the same one every run), some first
write something the chatbot won't understand, a few opt out at the opening message, and the
rest stay silent (their conversations expire). Shares are of all numbers, picked by a hash of
the number, so a run is the same every time.
"""

from __future__ import annotations

import re

from schemas.chatbot import PLACEHOLDER, Chatbot
from tasks.gateway.reply_script import ReplyRule, ReplyScript, fold

OPT_OUT_SHARE = 0.03
CONFUSED_SHARE = 0.20  # of everyone: the first answer is something the chatbot won't understand
ANSWER_SHARE = 0.85  # the rest of those (past the two above) answer; the others stay silent
NONSENSE = ("mmm no sé", "¿quién es?", "ok 👍", "maybe later")


def script_for_chatbot(chatbot: Chatbot) -> ReplyScript:
    """A reply script exercising every option of `chatbot`, fallbacks, an opt-out and silence."""
    rules: list[ReplyRule] = [
        ReplyRule(("*",), ("STOP",), share=OPT_OUT_SHARE, after=1, delay=0.5, line=1)
    ]
    line = 2
    for step in chatbot.steps.values():
        if step.is_final:
            continue
        asked = _fixed_fragment(step.say)
        answers = tuple(option.when[0] for option in step.replies)
        rules.append(
            ReplyRule(
                ("*",), NONSENSE, share=CONFUSED_SHARE, after_text=asked, delay=0.5, line=line
            )
        )
        rules.append(
            ReplyRule(
                ("*",), answers, share=ANSWER_SHARE, after_text=asked, delay=0.5, line=line + 1
            )
        )
        if step.otherwise:  # asked again after a fallback: answer properly this time
            again = _fixed_fragment(step.otherwise)
            rules.append(
                ReplyRule(("*",), answers, after_text=again, delay=0.5, times=5, line=line + 2)
            )
        line += 3
    return ReplyScript(replies=tuple(rules), source=f"replies made from chatbot {chatbot.id}")


def _fixed_fragment(text: str) -> str:
    """The longest stretch of a message without placeholders: it is in every contact's copy."""
    pieces = [p.strip() for p in PLACEHOLDER.split(text)[::2]]
    longest = max(pieces, key=len) if pieces else ""
    return fold(re.sub(r"\s+", " ", longest)) or fold(text)
