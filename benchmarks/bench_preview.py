"""Figures for what `launch --dry-run` adds (issue 11). Prints them; not part of the test suite.

    .venv/bin/python -m benchmarks.bench_preview

Quiet hours (tasks.quiet_hours) for 1,000,000 distinct numbers of 10 countries, 8 of them with
several time zones, with and without the countries validation already knows; the cost estimate
(tasks.pricing) for 1,000,000 contacts, the opening message alone and with an upper bound.
(`bench_validate` times the whole `launch --dry-run` against `validate`.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import phonenumbers
import polars as pl

from tasks.phones import check_phones
from tasks.pricing import launch_estimate, load_prices
from tasks.quiet_hours import next_allowed, waiting_summary, zones_for

ROOT = Path(__file__).resolve().parents[1]


def timed(label: str, run: Callable[[], object], what: str) -> None:
    started = time.perf_counter()
    run()
    print(f"  {label}: {time.perf_counter() - started:.2f} s for {what}")


def quiet_hours() -> None:
    rng = random.Random(7)
    kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    bases = [
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        for region in ("US", "MX", "BR", "AU", "RU", "GB", "ES", "CO", "AR", "CA")
        for kind in kinds
        if (example := phonenumbers.example_number_for_type(region, kind)) is not None
    ]
    drawn = {rng.choice(bases)[:-6] + f"{rng.randrange(10**6):06d}" for _ in range(1_300_000)}
    series = pl.Series("phone", sorted(drawn)[:1_000_000]).shuffle(seed=7)
    regions = check_phones(series)["region"]
    instant = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    zones_for(series.head(1000))  # per-region regexes, built once per process
    what = f"{len(series):,} distinct numbers"
    print("Quiet hours")
    timed("zones_for", lambda: zones_for(series), what)
    timed("next_allowed", lambda: next_allowed(series, instant), what)
    timed(
        "next_allowed(countries=)", lambda: next_allowed(series, instant, countries=regions), what
    )
    timed(
        "waiting_summary(countries=)",
        lambda: waiting_summary(series, instant, None, regions),
        what,
    )


def cost() -> None:
    table = load_prices(ROOT / "data" / "sms-prices.tsv")
    rng = random.Random(7)
    codes = ["MX", "US", "BR", "CO", "AR", "ES", "GB", "CL", "DE", "001"]
    contacts = pl.DataFrame({"country": [rng.choice(codes) for _ in range(1_000_000)]})
    opening = pl.Series([rng.choice((1, 1, 2, 3)) for _ in range(1_000_000)])
    others = [("thanks", opening.clone()), ("callback", opening.clone())]
    print("Cost estimate")
    for label, steps in (("opening", []), ("opening + upper bound (3 messages)", others)):
        started = time.perf_counter()
        launch_estimate(contacts, opening, table, steps)
        print(f"  {label}: {time.perf_counter() - started:.2f} s for 1,000,000 contacts")


if __name__ == "__main__":
    quiet_hours()
    cost()
