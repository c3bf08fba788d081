"""What a campaign will cost before it is launched: a per-country price table, and estimates.

The price table is a TSV the user replaces with their aggregator's price list
(`data/sms-prices.tsv` ships with SAMPLE prices, not real tariffs):

    # comment lines start with "#"; blank lines are skipped
    country	price_per_segment	currency
    *	0.0500	USD        <- optional: every country not listed
    MX	0.0420	USD

`country` is an ISO 3166 alpha-2 code phonenumbers knows (any case; kept upper case) or `*`;
`price_per_segment` a plain decimal number >= 0 (`0.042`, not `$0.042` or `0,042`); `currency`
a three-letter code, the same on every row (a table can't add dollars to pesos). A file that
breaks any of this is refused naming the file, the line and the field.

An estimate multiplies SMS segments by the price of each message's country, in polars (one join):
per country, messages, segments, price and cost, and the totals. At launch only the opening
message is certain: what follows depends on each contact's replies, so `launch_estimate` prices
the opening messages, and optionally an upper bound in which every contact gets every other
message of the chatbot once (fallbacks and keyword answers excepted).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import phonenumbers
import polars as pl

from smartchat.errors import ContactFileError, SmartChatError

__all__ = [
    "DEFAULT_COUNTRY",
    "HEADER",
    "CostEstimate",
    "LaunchEstimate",
    "PriceTable",
    "estimate",
    "launch_estimate",
    "load_prices",
]

DEFAULT_COUNTRY = "*"
HEADER = ("country", "price_per_segment", "currency")
OPENING_NOTE = (
    "The estimate covers the opening message: what is sent next depends on each contact's replies."
)
_COST_DECIMALS = 6  # costs are rounded to a millionth of the currency (float sums drift)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class PriceTable:
    """Price of one SMS segment per country (ISO alpha-2), in one currency."""

    source: Path
    currency: str
    prices: dict[str, float] = field(default_factory=dict)  # without the `*` row
    default: float | None = None  # the `*` row, for countries not listed

    def frame(self) -> pl.DataFrame:
        """Columns `country`, `price_per_segment` (the `*` row not included)."""
        return pl.DataFrame(
            {"country": list(self.prices), "price_per_segment": list(self.prices.values())},
            schema={"country": pl.Utf8, "price_per_segment": pl.Float64},
        )


@dataclass(frozen=True)
class CostEstimate:
    """Per country and in total. `by_country`: `country`, `messages`, `segments`,
    `price_per_segment`, `default_price` (priced by the `*` row), `cost`; sorted by cost
    descending. A country with no price (not listed, no `*` row) has null price and cost, is
    named in `unpriced`, and makes `cost` None: a total that leaves some messages out would
    be wrong."""

    by_country: pl.DataFrame
    messages: int
    segments: int
    cost: float | None
    currency: str
    unpriced: tuple[str, ...]


@dataclass(frozen=True)
class LaunchEstimate:
    opening: CostEstimate  # every contact's opening message
    upper_bound: CostEstimate | None  # opening + every other message once per contact
    note: str = OPENING_NOTE


def load_prices(path: Path | str) -> PriceTable:
    """Read and check a price table; any problem is refused naming the file, line and field.

    An unreadable file (missing, a folder, not UTF-8) raises ContactFileError (the error for
    an input file that can't be read); a malformed one SmartChatError.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ContactFileError(f"The price file {source} does not exist.") from None
    except IsADirectoryError:
        raise ContactFileError(f"The price file {source} is a folder, not a file.") from None
    except UnicodeDecodeError:
        raise ContactFileError(
            f"The price file {source} is not UTF-8 text: save it as a UTF-8 .tsv file."
        ) from None
    except OSError as exc:
        raise ContactFileError(
            f"The price file {source} can't be read: {exc.strerror or exc}."
        ) from None

    def refuse(line: int, column: str | None, problem: str) -> SmartChatError:
        where = f"{source}, line {line}" + (f", {column}" if column else "")
        return SmartChatError(f"{where}: {problem}")

    header_line: int | None = None
    prices: dict[str, float] = {}
    seen: dict[str, int] = {}
    default: float | None = None
    currency: tuple[str, int] | None = None
    regions = phonenumbers.SUPPORTED_REGIONS
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [value.strip() for value in line.split("\t")]
        if header_line is None:
            if tuple(f.lower() for f in fields) != HEADER:
                raise refuse(
                    number,
                    None,
                    "the header must be the three tab-separated columns "
                    f"{' '.join(HEADER)}, not {' | '.join(fields)!r}.",
                )
            header_line = number
            continue
        if len(fields) != len(HEADER):
            raise refuse(
                number,
                None,
                f"expected 3 tab-separated fields ({', '.join(HEADER)}), found {len(fields)}.",
            )
        country, price_text, code = fields[0].upper(), fields[1], fields[2].upper()
        if country != DEFAULT_COUNTRY and country not in regions:
            raise refuse(
                number,
                "country",
                f"{fields[0]!r} is not an ISO 3166 alpha-2 country code phonenumbers knows "
                "(MX, US, BR...), nor * for every country not listed.",
            )
        if country in seen:
            raise refuse(number, "country", f"{country} is already priced on line {seen[country]}.")
        price = _price(price_text)
        if price is None:
            raise refuse(
                number,
                "price_per_segment",
                f"{price_text!r} is not a price: write a plain decimal number with a dot, "
                "such as 0.042 (no currency symbol, no thousands separator).",
            )
        if not _CURRENCY.fullmatch(code):
            raise refuse(
                number,
                "currency",
                f"{fields[2]!r} is not a three-letter currency code such as USD.",
            )
        if currency is None:
            currency = (code, number)
        elif code != currency[0]:
            raise refuse(
                number,
                "currency",
                f"{code} differs from {currency[0]} on line {currency[1]}: one currency per file.",
            )
        seen[country] = number
        if country == DEFAULT_COUNTRY:
            default = price
        else:
            prices[country] = price
    if header_line is None:
        raise SmartChatError(
            f"{source}: no header found: the first line that is not a comment must be "
            f"{' '.join(HEADER)} (tab-separated)."
        )
    if currency is None:
        raise SmartChatError(f"{source}: no prices after the header on line {header_line}.")
    return PriceTable(source=source, currency=currency[0], prices=prices, default=default)


def _price(text: str) -> float | None:
    if not _NUMBER.fullmatch(text):
        return None
    try:
        value = float(Decimal(text))
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        return None
    return value if math.isfinite(value) else None


def estimate(segments: pl.DataFrame, prices: PriceTable) -> CostEstimate:
    """Cost of the messages in `segments` (columns `country`, `segments`: one row per message,
    or per contact with that message's segment count). A null country (a number with no
    region) is priced by the `*` row like any unlisted country."""
    missing = {"country", "segments"} - set(segments.columns)
    if missing:
        raise ValueError(f"estimate: `segments` lacks the column(s) {sorted(missing)}")
    per_country = (
        segments.lazy()
        .select(
            pl.col("country").cast(pl.Utf8).fill_null(""),
            pl.col("segments").cast(pl.Int64),
        )
        .group_by("country")
        .agg(pl.len().cast(pl.Int64).alias("messages"), pl.col("segments").sum())
        .join(prices.frame().lazy(), on="country", how="left")
        .with_columns(
            pl.col("price_per_segment").is_null().alias("default_price"),
            pl.col("price_per_segment").fill_null(pl.lit(prices.default, pl.Float64)),
        )
        .with_columns(
            pl.col("default_price") & pl.col("price_per_segment").is_not_null(),
            (pl.col("segments") * pl.col("price_per_segment")).round(_COST_DECIMALS).alias("cost"),
        )
        .with_columns(pl.when(pl.col("country") != "").then(pl.col("country")).alias("country"))
        .sort(["cost", "country"], descending=[True, False], nulls_last=True)
        .collect()
    )
    unpriced = per_country.filter(pl.col("price_per_segment").is_null())["country"]
    names = tuple(sorted(str(c) if c is not None else "(no country)" for c in unpriced))
    total = per_country["cost"].sum()
    return CostEstimate(
        by_country=per_country,
        messages=int(per_country["messages"].sum()),
        segments=int(per_country["segments"].sum()),
        cost=None if names else round(float(total), _COST_DECIMALS),
        currency=prices.currency,
        unpriced=names,
    )


def launch_estimate(
    contacts: pl.DataFrame,
    opening_segments: pl.Series,
    prices: PriceTable,
    other_messages: Sequence[tuple[str, pl.Series]] = (),
) -> LaunchEstimate:
    """The launch preview: the cost of every contact's opening message.

    `contacts`: the validation report's contacts (a `country` column; others are ignored);
    `opening_segments`: the opening message's segments per contact, in the same order.
    `other_messages`: (step, segments per contact) for the chatbot's other messages; given, the
    estimate adds an upper bound in which every contact gets each of them once (a conversation
    takes one branch, so the real cost is lower; fallbacks and keyword answers are left out).
    """
    country = contacts.get_column("country")
    opening = estimate(_frame(country, opening_segments, "opening message"), prices)
    if not other_messages:
        return LaunchEstimate(opening=opening, upper_bound=None)
    frames = [_frame(country, opening_segments, "opening message")]
    frames += [_frame(country, counts, f"step {step!r}") for step, counts in other_messages]
    return LaunchEstimate(opening=opening, upper_bound=estimate(pl.concat(frames), prices))


def _frame(country: pl.Series, counts: pl.Series, what: str) -> pl.DataFrame:
    if len(counts) != len(country):
        raise ValueError(
            f"launch_estimate: {len(counts)} segment counts for the {what}, {len(country)} contacts"
        )
    return pl.DataFrame(
        {"country": country.cast(pl.Utf8), "segments": counts.cast(pl.Int64)},
    )
