"""Quiet hours: when a scheduled message may reach each recipient, in the recipient's local time.

A campaign's quiet hours (default 21:00-08:00, a window that may wrap midnight) hold in each
recipient's own time, derived from the number exactly as `phonenumbers.timezone.
time_zones_for_number` does, but for whole columns:

* a valid number whose type is geographical (fixed line, fixed line or mobile, or mobile in the
  countries where mobiles are geographical: MX, BR, AR, CN, ID) gets the zones of the longest
  prefix in phonenumbers' timezone map (`phonenumbers.tzdata.TIMEZONE_DATA`, up to 9 digits);
* any other valid number (a Russian or British mobile, a toll-free number) gets its calling
  code's zones (all of Russia's and Kazakhstan's for +7 mobiles);
* an invalid number gets "Etc/Unknown".

Whole columns are judged with polars: a number's region comes from `tasks.phones.check_phones`
(or the validation report's `country` column), and only in calling codes whose zones vary
inside the code (+1, +7, +52, +55, +61...) its type (regexes built from phonenumbers' metadata,
per region, cached) and its longest prefix (a lookup per prefix length). The next allowed
moment is then computed once per distinct set of zones (a few hundred at most), not per row.

Rules, in the recipient's favour:

* **Most cautious**: a number with several zones is in quiet hours if it is in ANY of them;
  it may be texted at the earliest moment at which it is outside quiet hours in ALL of them.
* **Zones with no shared allowed moment** (a number placed anywhere from Guam to Samoa: spread
  wider than the allowed part of the day): it gets the earliest moment outside quiet hours in
  as many of its zones as possible.
* **Unknown zone** ("Etc/Unknown": invalid numbers, codes phonenumbers has no zones for): UTC.
* **Clock changes**: local times are computed with `zoneinfo` (IANA data) at each instant, so a
  window is always the recipient's wall clock. When the end of the window falls in a spring-
  forward gap (an end of 02:30 on a night clocks jump from 02:00 to 03:00), the number waits
  until the wall clock shows the end time after the jump (03:30): late rather than early.

`next_allowed` is for scheduled messages (a campaign's opening message, a follow-up nobody asked
for). An answer to a contact's own reply is not held back: that is the sender's decision.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
import polars as pl
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import _GEO_MOBILE_COUNTRIES
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from tasks.phones import SPECIAL_TYPES, check_phones

__all__ = [
    "UNKNOWN_ZONE",
    "QuietHours",
    "WaitingSummary",
    "next_allowed",
    "waiting_summary",
    "zones_for",
]

UNKNOWN_ZONE = "Etc/Unknown"  # phonenumbers' own name for "no zone known"
_FALLBACK_ZONE = "UTC"  # what an unknown zone is taken to be
_UTC_US = pl.Datetime("us", "UTC")

_SetId = Callable[[Sequence[str]], int]  # a zone set's index in the table being built
_GEO_MOBILE = frozenset(int(code) for code in _GEO_MOBILE_COUNTRIES)
_SIMPLE_PATTERN = re.compile(r"(?:\\d|\(\?:|[0-9\[\]\-|(){},?*+^$])*")


@dataclass(frozen=True)
class QuietHours:
    """A daily window, in each recipient's local time, when scheduled messages wait.

    `start` is inclusive and `end` exclusive; `start > end` wraps midnight (21:00-08:00);
    `start == end` means no quiet hours at all.
    """

    start: time = time(21, 0)
    end: time = time(8, 0)

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is not None:
                raise ValueError(f"QuietHours.{name} is a wall-clock time: give it no time zone")

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """`21:00-08:00` (the SMARTCHAT_QUIET_HOURS setting, already checked for its shape)."""
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
        return cls(start, end)

    @property
    def active(self) -> bool:
        return self.start != self.end

    def is_quiet(self, local: time) -> bool:
        """Whether a wall-clock time falls in the window."""
        moment = local.replace(tzinfo=None)
        if not self.active:
            return False
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


@dataclass(frozen=True)
class WaitingSummary:
    """What `launch --dry-run` says: "N contacts wait until HH:MM (their local morning)".

    `by_country`: columns `country` (ISO code, "001" for non-geographic numbers, null for
    invalid ones), `contacts`, `waiting`, `latest` (UTC, null when none waits), sorted by
    `waiting` descending then country.
    """

    contacts: int
    waiting: int
    latest: datetime | None  # the last moment any waiting contact may be texted (UTC)
    local_end: time  # the wall-clock time they wait for: the end of quiet hours
    by_country: pl.DataFrame


# --------------------------------------------------------------------------------------------
# Zones per number
# --------------------------------------------------------------------------------------------


def zones_for(phones: pl.Series, countries: pl.Series | None = None) -> pl.Series:
    """The IANA zones of each number (List[Utf8]), as `time_zones_for_number` gives them.

    Same length and order as `phones`; a null number gives null, an invalid one
    `["Etc/Unknown"]`. `countries`, when given, is the validation report's `country` column for
    these numbers (ISO codes of valid numbers): it saves judging the numbers again (about
    0.5 s a million); without it the numbers are judged by `tasks.phones.check_phones`.
    """
    ids, sets, _ = _zone_set_ids(phones, countries)
    table = pl.Series("zones", [list(zones) for zones in sets], dtype=pl.List(pl.Utf8))
    return table.gather(ids).rename(phones.name or "zones")


def _judged(phones: pl.Series, countries: pl.Series | None) -> pl.DataFrame:
    """Per row: `phone`, `valid`, `region`, `calling_code` (as `check_phones` gives them)."""
    strings = phones.cast(pl.Utf8).rename("phone")
    if countries is None:
        return pl.concat([strings.to_frame(), check_phones(strings)], how="horizontal")
    if len(countries) != len(phones):
        raise ValueError("`countries` must have one value per phone number")
    frame = pl.DataFrame({"phone": strings, "region": countries.cast(pl.Utf8)})
    regions = [r for r in frame["region"].drop_nulls().unique().to_list() if r != "001"]
    codes = pl.DataFrame(
        {"region": regions, "calling_code": [_region_code(r) for r in regions]},
        schema={"region": pl.Utf8, "calling_code": pl.Int32},
    ).filter(pl.col("calling_code") > 0)
    frame = frame.join(codes, on="region", how="left", maintain_order="left").select(
        "phone",
        (pl.col("calling_code").is_not_null() & pl.col("phone").is_not_null()).alias("valid"),
        "region",
        "calling_code",
    )
    unsure = ~frame["valid"] & frame["phone"].is_not_null()  # "001", an unknown region: judge
    if unsure.any():
        rows = unsure.arg_true()
        checked = check_phones(frame["phone"].filter(unsure))
        frame = frame.with_columns(
            frame[name].clone().scatter(rows, checked[name])
            for name in ("valid", "region", "calling_code")
        )
    return frame


def _region_code(region: str) -> int:
    return int(phonenumbers.country_code_for_region(region))


def _zone_set_ids(
    phones: pl.Series, countries: pl.Series | None = None
) -> tuple[pl.Series, list[tuple[str, ...]], pl.Series]:
    """Per row: the index of its zone set in the returned list (null for a null number), and
    its region (ISO code, "001" for non-geographic, null for an invalid or null number)."""
    judged = (
        _judged(phones, countries)
        .with_columns(
            pl.col("phone").str.slice(1).alias("digits"),
            pl.col("calling_code").cast(pl.Utf8).str.len_bytes().alias("code_size"),
        )
        .with_columns(pl.col("digits").str.slice(pl.col("code_size")).alias("nsn"))
    )

    sets: list[tuple[str, ...]] = []
    index: dict[tuple[str, ...], int] = {}

    def set_id(zones: Sequence[str]) -> int:
        key = tuple(zones)
        if key not in index:
            index[key] = len(sets)
            sets.append(key)
        return index[key]

    unknown = set_id((UNKNOWN_ZONE,))
    codes = [int(c) for c in judged["calling_code"].drop_nulls().unique().to_list()]
    by_country = pl.col("calling_code").replace_strict(
        codes,
        [set_id(_country_zones(code)) for code in codes],
        default=None,
        return_dtype=pl.UInt32,
    )
    base = judged.select(
        pl.when(pl.col("phone").is_null())
        .then(pl.lit(None, pl.UInt32))
        .when(~pl.col("valid"))
        .then(pl.lit(unknown, pl.UInt32))
        .otherwise(by_country.fill_null(unknown))
        .alias("set"),
        pl.when(pl.col("valid")).then(pl.col("region")).alias("region"),
    )
    # Only where zones differ inside a calling code do the number's type and prefix matter.
    varied = [code for code in codes if not _uniform(code)]
    need = judged.with_row_index("at").filter(
        pl.col("valid") & pl.col("calling_code").is_in(varied)
    )
    if need.is_empty():
        return base["set"], sets, base["region"]
    # The longest prefix is looked up once per distinct leading digits, not once per number:
    # a campaign's numbers share far fewer prefixes than they are.
    need = need.with_columns(
        pl.col("digits").str.slice(0, TIMEZONE_LONGEST_PREFIX).alias("lead"), _geographic(need)
    )
    leads = need.select(pl.col("lead").filter(pl.col("geo")).unique())
    leads = leads.with_columns(_longest_prefix_expr(pl.col("lead"), set_id).alias("by_prefix"))
    exact = need.join(leads, on="lead", how="left").select(
        "at",
        pl.when(pl.col("geo"))
        .then(pl.col("by_prefix"))
        .otherwise(by_country)
        .fill_null(unknown)
        .alias("set"),
    )
    return base["set"].clone().scatter(exact["at"], exact["set"]), sets, base["region"]


@functools.cache
def _uniform(code: int) -> bool:
    """Whether every number of the code gets the same zones, whatever its type or prefix."""
    text = str(code)
    if text not in TIMEZONE_DATA:  # geographic numbers could find no prefix: "Etc/Unknown"
        return False
    zones = tuple(TIMEZONE_DATA[text])
    return all(
        tuple(value) == zones for key, value in TIMEZONE_DATA.items() if key.startswith(text)
    )


@functools.cache
def _prefixes_by_size() -> dict[int, tuple[list[int], list[tuple[str, ...]]]]:
    out: dict[int, tuple[list[int], list[tuple[str, ...]]]] = {}
    for prefix, zones in TIMEZONE_DATA.items():
        keys, sets = out.setdefault(len(prefix), ([], []))
        keys.append(int(prefix))
        sets.append(tuple(zones))
    return out


def _longest_prefix_expr(digits: pl.Expr, set_id: _SetId) -> pl.Expr:
    """The set of the longest prefix of `digits` in phonenumbers' map (null: none). A slice
    shorter than the size asked for parses to fewer digits than that size's keys have, and
    digits never start with 0, so each size only matches its own prefixes."""
    lookups = []
    for size in range(TIMEZONE_LONGEST_PREFIX, 0, -1):
        keys, zone_sets = _prefixes_by_size().get(size, ([], []))
        if keys:
            lookups.append(
                digits.str.slice(0, size)
                .cast(pl.UInt64, strict=False)
                .replace_strict(
                    keys, [set_id(z) for z in zone_sets], default=None, return_dtype=pl.UInt32
                )
            )
    return pl.coalesce(lookups)


def _country_zones(code: int) -> Sequence[str]:
    """`_country_level_time_zones_for_number`: the calling code's zones, looked up exactly as
    phonenumbers slices the code (cc[:10] down to cc[:2])."""
    text = str(code)
    for size in range(TIMEZONE_LONGEST_PREFIX + 1, 1, -1):
        if text[:size] in TIMEZONE_DATA:
            return TIMEZONE_DATA[text[:size]]
    return (UNKNOWN_ZONE,)


def _geographic(judged: pl.DataFrame) -> pl.Series:
    """Whether each valid number's type is geographical (`is_number_type_geographical`)."""
    out = pl.repeat(False, judged.height, dtype=pl.Boolean, eager=True).rename("geo")
    frame = judged.with_row_index("row").filter(pl.col("valid"))
    for (region, code), group in frame.group_by("region", "calling_code"):
        flags = _region_geographic(str(region), int(code), group)
        out = out.scatter(group["row"], flags)
    return out


def _region_geographic(region: str, code: int, group: pl.DataFrame) -> pl.Series:
    rules = _type_rules(region, code)
    if rules is None:  # metadata our translation can't read: phonenumbers itself decides
        return group["phone"].map_elements(_exact_geographic, return_dtype=pl.Boolean)
    special, fixed, mobile, same = rules
    nsn = pl.col("nsn")
    expr = pl.lit(False)
    if fixed is not None:
        expr = _desc_expr(nsn, fixed)
    if code in _GEO_MOBILE and mobile is not None and not same:
        expr = expr | _desc_expr(nsn, mobile)
    for desc in special:
        expr = expr & ~_desc_expr(nsn, desc)
    return group.select(expr.alias("geo"))["geo"]


_Desc = tuple[str, tuple[int, ...]]  # full-match regex, possible lengths (empty: any)


def _desc_expr(nsn: pl.Expr, desc: _Desc) -> pl.Expr:
    regex, lengths = desc
    matched = nsn.str.contains(regex)
    if lengths:
        return nsn.str.len_bytes().is_in(list(lengths)) & matched
    return matched


@functools.cache
def _type_rules(
    region: str, code: int
) -> tuple[tuple[_Desc, ...], _Desc | None, _Desc | None, bool] | None:
    metadata: PhoneMetadata | None
    if region == "001":
        metadata = PhoneMetadata.metadata_for_nongeo_region(code, None)
    else:
        metadata = PhoneMetadata.metadata_for_region(region, None)
    if metadata is None:
        return None

    def desc(name: str) -> _Desc | None:
        number_desc = getattr(metadata, name, None)
        pattern = getattr(number_desc, "national_number_pattern", None)
        if not pattern:
            return None  # phonenumbers: an empty pattern never matches
        lengths = tuple(getattr(number_desc, "possible_length", None) or ())
        if lengths == (-1,):
            return None
        if not _SIMPLE_PATTERN.fullmatch(pattern):
            raise _Untranslatable(pattern)
        regex = "^(?:" + pattern.replace("\\d", "[0-9]") + ")$"
        pl.select(pl.lit("0").str.contains(regex))  # compiles, or raises
        return regex, lengths

    try:
        special = tuple(d for d in (desc(name) for name in SPECIAL_TYPES) if d is not None)
        return (
            special,
            desc("fixed_line"),
            desc("mobile"),
            metadata.same_mobile_and_fixed_line_pattern,
        )
    except (_Untranslatable, pl.exceptions.ComputeError):
        return None


class _Untranslatable(ValueError):
    pass


def _exact_geographic(phone: str) -> bool:
    number = phonenumbers.parse(phone, None)
    kind = phonenumbers.number_type(number)
    return bool(phonenumbers.is_number_type_geographical(kind, number.country_code or 0))


# --------------------------------------------------------------------------------------------
# When each number may be texted
# --------------------------------------------------------------------------------------------


def next_allowed(
    phones: pl.Series,
    now: datetime,
    quiet: QuietHours | None = None,
    countries: pl.Series | None = None,
) -> pl.Series:
    """The UTC moment each number may get a scheduled message (Datetime("us", "UTC")).

    `now` when the number is outside quiet hours in every one of its zones, else the earliest
    moment at which it is outside them in all its zones (see the module docstring for zones
    with no shared moment, unknown zones and clock changes). `now` is taken as UTC when it has
    no time zone. A null number gives null. `countries`: as for `zones_for`. For scheduled and
    opening messages only: answers to a contact's own reply are not held back.
    """
    allowed, _ = _allowed(phones, _utc(now), quiet or QuietHours(), countries)
    return allowed


def _allowed(
    phones: pl.Series, now: datetime, quiet: QuietHours, countries: pl.Series | None
) -> tuple[pl.Series, pl.Series]:
    ids, sets, regions = _zone_set_ids(phones, countries)
    times = pl.Series("next_allowed", [_next_for_zones(z, now, quiet) for z in sets])
    return times.cast(_UTC_US).gather(ids).rename("next_allowed"), regions


def waiting_summary(
    phones: pl.Series,
    now: datetime,
    quiet: QuietHours | None = None,
    countries: pl.Series | None = None,
) -> WaitingSummary:
    """How many numbers wait for quiet hours to end, until when, per country (null numbers
    are not counted). `countries`: as for `zones_for`."""
    quiet = quiet or QuietHours()
    moment = _utc(now)
    allowed, regions = _allowed(phones, moment, quiet, countries)
    frame = pl.DataFrame({"country": regions, "allowed": allowed}).filter(
        pl.col("allowed").is_not_null()
    )
    waits = pl.col("allowed") > pl.lit(moment, _UTC_US)
    by_country = (
        frame.group_by("country")
        .agg(
            pl.len().cast(pl.Int64).alias("contacts"),
            waits.sum().cast(pl.Int64).alias("waiting"),
            pl.col("allowed").filter(waits).max().alias("latest"),
        )
        .sort(["waiting", "country"], descending=[True, False], nulls_last=True)
    )
    waiting = int(by_country["waiting"].sum())
    latest = by_country["latest"].max() if waiting else None
    assert latest is None or isinstance(latest, datetime)
    return WaitingSummary(
        contacts=frame.height,
        waiting=waiting,
        latest=latest,
        local_end=quiet.end,
        by_country=by_country,
    )


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(_FALLBACK_ZONE if name == UNKNOWN_ZONE else name)


def _quiet_in(instant: datetime, zone: ZoneInfo, quiet: QuietHours) -> bool:
    return quiet.is_quiet(instant.astimezone(zone).time())


def _next_for_zones(zones: Sequence[str], now: datetime, quiet: QuietHours) -> datetime:
    """The earliest instant >= now outside quiet hours in all `zones` (see the module doc)."""
    if not quiet.active:
        return now
    infos = [_zone(name) for name in dict.fromkeys(zones)]
    if not any(_quiet_in(now, zone, quiet) for zone in infos):
        return now
    # The answer is an instant at which some zone leaves quiet hours: its wall clock shows
    # `end`. Candidates over the next few local days, in order, checked against every zone.
    candidates: set[datetime] = set()
    for zone in infos:
        today = now.astimezone(zone).date()
        for offset in range(-1, 4):
            candidates.add(_wall_clock_instant(today + timedelta(days=offset), quiet.end, zone))
    ordered = sorted(c for c in candidates if c > now)
    best: tuple[int, datetime] | None = None
    for candidate in ordered:
        quiet_zones = sum(_quiet_in(candidate, zone, quiet) for zone in infos)
        if quiet_zones == 0:
            return candidate
        if best is None or quiet_zones < best[0]:
            best = (quiet_zones, candidate)
    assert best is not None
    return best[1]


def _wall_clock_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant `zone`'s clock shows `wall` on `day`: the first of two (clocks going
    back); in a gap (clocks going forward), the instant the clock shows it after the jump."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return min(first, second)  # one reading, or two (clocks going back): the first
    return max(first, second)  # in a gap: the later reading lands after the jump
