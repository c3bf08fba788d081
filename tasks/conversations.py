"""The conversation engine: each reply read against the contact's step, answered through the sender.

    unread replies ──► (one query: campaign, chatbot version, state, custom data, next seq)
        ──► decide, in memory, reply by reply in the order they arrived
        ──► one transaction: outcomes on the replies, conversation states, answers queued
        ──► the sender sends the queued answers, exactly once (tasks.sending)

What a reply is (`replies.outcome`), first rule that applies:

    opt_out        STOP, BAJA... alone: the number is opted out everywhere, one confirmation
    opt_in         START, ALTA... alone: the opt-out ends, one confirmation
    help           HELP, AYUDA... alone: the help text; the conversation waits where it was
    after_opt_out  anything else from a number that opted out: recorded, not answered
    after_stop     the campaign is stopped (or completed): recorded, not answered
    after_end      the conversation has finished: recorded, not answered
    after_expiry   no reply came for the chatbot's `expire_after`: the conversation ended
    option         matched an option: its step's message goes out (a final step ends it)
    fallback       matched nothing: `otherwise` goes out and the step waits; the
                   `max_misses`-th miss in a row ends the conversation instead
    unsolicited    (set by the receiver's drain: nobody wrote to that number)

Answers go out as the contact's next message (`seq`), from the number the reply was sent to,
rendered with the contact's Custom Data frozen at launch. Deciding is plain Python over a batch
already joined in one query: replies of one contact must be read in order, each against the
state the previous one left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from schemas.chatbot import Chatbot, normalize_reply
from schemas.keywords import Keyword, Keywords
from schemas.messages import MessageStatus
from smartchat.settings import StoreSettings
from tasks import sms
from tasks.store import conversations as state_rows
from tasks.store import messages as message_rows
from tasks.store import opt_outs as opt_out_rows
from tasks.store import write_transaction
from tasks.store.chatbots import versions
from tasks.store.connection import Connection

WAITING, FINISHED, EXPIRED, OPTED_OUT = "waiting", "finished", "expired", "opted_out"


@dataclass
class Conversation:
    """One contact's place in a campaign's chatbot, as the engine carries it through a batch."""

    campaign_id: str
    phone: str
    country: str | None
    step: str
    state: str = WAITING
    end_reason: str | None = None
    misses: int = 0
    turns: int = 0
    last_outbound_at: datetime | None = None
    first_reply_at: datetime | None = None
    last_reply_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class Answer:
    step: str
    kind: str  # say | otherwise | opt_out | opt_in | help
    body: str


@dataclass
class Decisions:
    """What a batch of replies comes to, ready for one write transaction."""

    replies: list[dict[str, Any]] = field(default_factory=list)
    states: dict[tuple[str, str], Conversation] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)
    opt_outs: list[dict[str, Any]] = field(default_factory=list)
    opt_ins: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for reply in self.replies:
            found[reply["outcome"]] = found.get(reply["outcome"], 0) + 1
        return found


@dataclass(frozen=True)
class BatchResult:
    replies: int
    answers: int
    outcomes: dict[str, int]
    campaigns: tuple[str, ...]  # campaigns with new answers queued: to send


def decide(
    batch: pl.DataFrame,
    chatbots: dict[tuple[str, int], Chatbot],
    keywords: Keywords,
    *,
    now: datetime,
    expire_after: float | None = None,
) -> Decisions:
    """Every reply of `batch` (tasks.store.conversations.unread_replies) decided, in order.

    `expire_after` overrides every chatbot's (a run against the sandbox ends sooner).
    """
    decisions = Decisions()
    opted_out: dict[str, bool] = {}
    next_seq: dict[tuple[str, str], int] = {}
    for row in batch.iter_rows(named=True):
        key = (row["campaign_id"], row["phone"])
        bot = chatbots[(row["chatbot_id"], row["chatbot_version"])]
        conversation = decisions.states.get(key) or _conversation(row, bot)
        is_opted_out = opted_out.get(row["phone"], row["opted_out"])
        next_seq.setdefault(key, row["last_seq"])
        limit = expire_after if expire_after is not None else bot.expire_after
        outcome, answer, option, conversation = _read(
            row, bot, keywords, conversation, is_opted_out, limit
        )
        if outcome == "opt_out":
            opted_out[row["phone"]] = True
            decisions.opt_outs.append(
                {
                    "phone": row["phone"],
                    "opted_out_at": row["received_at"],
                    "campaign_id": row["campaign_id"],
                    "keyword": row["body"].strip(),
                }
            )
        elif outcome == "opt_in":
            opted_out[row["phone"]] = False
            decisions.opt_ins.append({"phone": row["phone"], "opted_in_at": row["received_at"]})
        if answer is not None:
            next_seq[key] += 1
            conversation.last_outbound_at = now
            decisions.answers.append(_message(row, answer, next_seq[key], bot))
        decisions.states[key] = conversation
        decisions.replies.append(
            {
                "campaign_id": row["campaign_id"],
                "phone": row["phone"],
                "seq": row["seq"],
                "outcome": outcome,
                "step": row["state_step"],
                "matched_option": option[0] if option else None,
                "goto_step": option[1] if option else None,
                "opt_out": outcome == "opt_out",
            }
        )
    return decisions


def _conversation(row: dict[str, Any], bot: Chatbot) -> Conversation:
    if row["state"] is None:  # still at the opening message
        return Conversation(
            row["campaign_id"],
            row["phone"],
            row["country"],
            bot.start,
            last_outbound_at=row["opened_at"],
        )
    return Conversation(
        row["campaign_id"],
        row["phone"],
        row["country"],
        row["step"],
        state=row["state"],
        misses=row["misses"],
        turns=row["turns"],
        last_outbound_at=row["last_outbound_at"],
        first_reply_at=row["first_reply_at"],
    )


def _read(
    row: dict[str, Any],
    bot: Chatbot,
    keywords: Keywords,
    conversation: Conversation,
    opted_out: bool,
    expire_after: float,
) -> tuple[str, Answer | None, tuple[str, str] | None, Conversation]:
    """(outcome, answer to send, (option, goto) matched, the conversation after this reply).

    Changes `conversation` in place: it is the batch's own working copy.
    """
    at = row["received_at"]
    row["state_step"] = conversation.step  # the step this reply answered
    replied = conversation
    replied.first_reply_at = replied.first_reply_at or at
    replied.last_reply_at = at
    texts = keywords.texts(bot.language)
    said = normalize_reply(row["body"])
    keyword = keywords.classify_normalized(said, bot.language)
    if keyword is Keyword.OPT_OUT:
        ended = _ended(replied, OPTED_OUT, OPTED_OUT, at) if replied.state == WAITING else replied
        return "opt_out", Answer(conversation.step, "opt_out", texts.opted_out), None, ended
    if keyword is Keyword.OPT_IN:
        return "opt_in", Answer(conversation.step, "opt_in", texts.opted_in), None, replied
    if keyword is Keyword.HELP:
        return "help", Answer(conversation.step, "help", texts.help_text), None, replied
    if opted_out:
        return "after_opt_out", None, None, replied
    if row["status"] != "launched":
        return "after_stop", None, None, replied
    if conversation.state == EXPIRED:
        return "after_expiry", None, None, replied
    if conversation.state != WAITING:
        return "after_end", None, None, replied
    if conversation.last_outbound_at is not None and at > conversation.last_outbound_at + (
        timedelta(seconds=expire_after)
    ):
        return "after_expiry", None, None, _ended(replied, EXPIRED, EXPIRED, at)

    step = bot.steps[conversation.step]
    option = step.match_normalized(said)
    if option is not None:
        target = bot.steps[option.goto]
        moved = replied
        moved.step, moved.misses, moved.turns = option.goto, 0, replied.turns + 1
        if target.is_final:
            moved = _ended(moved, FINISHED, "completed", at)
        return (
            "option",
            Answer(option.goto, "say", target.say),
            (option.when[0], option.goto),
            moved,
        )
    misses = replied.misses + 1
    missed = replied
    missed.misses = misses
    if misses >= bot.max_misses:
        return "fallback", None, None, _ended(missed, FINISHED, "miss_limit", at)
    fallback = Answer(conversation.step, "otherwise", step.otherwise) if step.otherwise else None
    return "fallback", fallback, None, missed


def _ended(conversation: Conversation, state: str, reason: str, at: datetime) -> Conversation:
    conversation.state, conversation.end_reason, conversation.ended_at = state, reason, at
    return conversation


def _message(row: dict[str, Any], answer: Answer, seq: int, bot: Chatbot) -> dict[str, Any]:
    values = {pair["key"]: pair["value"] for pair in row["custom_data"] or []}
    body = bot.render(answer.body, values) if answer.kind in ("say", "otherwise") else answer.body
    return {
        "campaign_id": row["campaign_id"],
        "phone": row["phone"],
        "seq": seq,
        "step": answer.step,
        "kind": answer.kind,
        "country": row["country"] or "",
        "body": body,
        "segments": sms.segments(body),
        "status": MessageStatus.QUEUED.value,
        "sender": row["sender"],
    }


def process_batch(
    store: StoreSettings,
    keywords: Keywords,
    *,
    limit: int = 5_000,
    expire_after: float | None = None,
    now: datetime | None = None,
) -> BatchResult:
    """Read up to `limit` unread replies, decide, and write it all in one transaction.

    Returns what was read; `campaigns` have answers queued for the sender.
    """
    now = now or datetime.now(UTC)
    with write_transaction(store) as conn:
        batch = state_rows.unread_replies(conn, limit)
        if batch.height == 0:
            return BatchResult(0, 0, {}, ())
        chatbots = {
            (bot.id, bot.version): bot.load()
            for chatbot_id in batch["chatbot_id"].unique().to_list()
            for bot in versions(conn, chatbot_id)
        }
        decisions = decide(batch, chatbots, keywords, now=now, expire_after=expire_after)
        _save(conn, decisions, now)
    campaigns = tuple(sorted({a["campaign_id"] for a in decisions.answers}))
    return BatchResult(batch.height, len(decisions.answers), decisions.counts(), campaigns)


def _save(conn: Connection, decisions: Decisions, now: datetime) -> None:
    replies = pl.DataFrame(
        decisions.replies,
        schema={
            "campaign_id": pl.String,
            "phone": pl.String,
            "seq": pl.Int64,
            "outcome": pl.String,
            "step": pl.String,
            "matched_option": pl.String,
            "goto_step": pl.String,
            "opt_out": pl.Boolean,
        },
    )
    states = pl.DataFrame(
        [vars(c) for c in decisions.states.values()],
        schema={
            "campaign_id": pl.String,
            "phone": pl.String,
            "country": pl.String,
            "step": pl.String,
            "state": pl.String,
            "end_reason": pl.String,
            "misses": pl.Int32,
            "turns": pl.Int32,
            "last_outbound_at": pl.Datetime("us", "UTC"),
            "first_reply_at": pl.Datetime("us", "UTC"),
            "last_reply_at": pl.Datetime("us", "UTC"),
            "ended_at": pl.Datetime("us", "UTC"),
        },
    )
    if decisions.opt_outs:
        frame = pl.DataFrame(decisions.opt_outs).with_columns(
            pl.lit(opt_out_rows.REPLY).alias("source")
        )
        opt_out_rows.record(conn, frame)
    if decisions.opt_ins:
        opt_out_rows.opt_in(conn, pl.DataFrame(decisions.opt_ins))
    opted_out_phones = pl.DataFrame(
        {"phone": [o["phone"] for o in decisions.opt_outs]}, schema={"phone": pl.String}
    )
    state_rows.save(conn, replies, states, opted_out_phones, now)
    if decisions.answers:
        answers = pl.DataFrame(decisions.answers)
        for campaign_id, group in answers.group_by("campaign_id", maintain_order=True):
            message_rows.insert(conn, str(campaign_id[0]), group)


def expire_and_complete(
    store: StoreSettings, *, expire_after: float | None = None, now: datetime | None = None
) -> tuple[int, list[str]]:
    """End conversations nobody answered in time; mark campaigns with nothing left completed."""
    now = now or datetime.now(UTC)
    with write_transaction(store) as conn:
        expired = state_rows.expire(conn, now, expire_after)
        completed = state_rows.complete(conn, now)
    return expired, completed
