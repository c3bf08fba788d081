"""What a launch would do, before anything is sent: who waits for quiet hours, what it costs.

`launch --dry-run` shows it. Both figures come from the validated contacts in bulk (polars):
the quiet hours from each number's time zones (tasks.quiet_hours), the cost from each
contact's segments for the opening message, priced per country (tasks.pricing); the upper
bound counts every other message once per contact, since those depend on replies.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from schemas.chatbot import Chatbot
from tasks import sms
from tasks.pricing import LaunchEstimate, launch_estimate, load_prices
from tasks.quiet_hours import QuietHours, WaitingSummary, waiting_summary


@dataclass(frozen=True)
class LaunchPreview:
    quiet: QuietHours
    waiting: WaitingSummary
    cost: LaunchEstimate | None  # None without a price table
    prices: Path | None

    def to_json(self) -> dict[str, Any]:
        cost = self.cost
        return {
            "quiet_hours": f"{self.quiet.start:%H:%M}-{self.quiet.end:%H:%M}",
            "waiting": self.waiting.waiting,
            "waiting_until": self.waiting.latest,
            "cost": None
            if cost is None
            else {
                "currency": cost.opening.currency,
                "opening": cost.opening.cost,
                "upper_bound": cost.upper_bound.cost if cost.upper_bound else None,
                "by_country": cost.opening.by_country.to_dicts(),
                "unpriced": list(cost.opening.unpriced),
                "prices": str(self.prices),
                "note": cost.note,
            },
        }


def preview(
    contacts: pl.DataFrame,
    chatbot: Chatbot,
    *,
    quiet: QuietHours,
    prices: Path | None,
    now: datetime,
) -> LaunchPreview:
    """The preview for validated `contacts` (tasks.validation's campaign frame)."""
    # The two halves share nothing, and much of each is polars work that leaves a core idle
    # (string slicing, joins, small groups): side by side, they take little more than one.
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            waiting_summary, contacts["phone"], now, quiet, countries=contacts["country"]
        )
        cost = _cost(contacts, chatbot, prices)
        return LaunchPreview(quiet, waiting.result(), cost, prices if cost is not None else None)


def _cost(contacts: pl.DataFrame, chatbot: Chatbot, prices: Path | None) -> LaunchEstimate | None:
    if prices is None or not prices.exists():
        return None
    # The per-value facts (length, GSM-7 or not) the segment expressions read, once.
    contacts = contacts.with_columns(sms.measure_columns(contacts, chatbot.custom_data))
    opening = _segments(contacts, chatbot.steps[chatbot.start].say)
    others = [
        (f"{step}.{field}", _segments(contacts, text))
        for step, field, text in chatbot.messages()
        if (step, field) != (chatbot.start, "say")
    ]
    return launch_estimate(contacts, opening, load_prices(prices), others)


def _segments(contacts: pl.DataFrame, template: str) -> pl.Series:
    # with_columns broadcasts a message without placeholders (a literal) to every contact.
    return contacts.with_columns(sms.message_segments(template).alias("_s"))["_s"]
