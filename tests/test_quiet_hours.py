"""Quiet hours (issue 11): each recipient's zones as phonenumbers gives them, the most cautious
rule across several zones, windows wrapping midnight, clock changes, unknown zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
import polars as pl
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from phonenumbers import timezone as pn_timezone

from tasks.phones import check_phones
from tasks.quiet_hours import QuietHours, next_allowed, waiting_summary, zones_for

ROOT = Path(__file__).resolve().parents[1]
NIGHT = QuietHours()  # 21:00-08:00

NEW_YORK = "+12125551234"
LOS_ANGELES = "+14155551234"
CHICAGO = "+13125551234"
ALASKA = "+19075551234"  # Adak and Anchorage
HONOLULU = "+18085551234"
US_TOLL_FREE = "+18005551234"  # not geographical: every +1 zone, Guam to Samoa
MEXICO_CITY = "+525512345678"
SAO_PAULO = "+5511987654321"
MANAUS = "+5592987654321"
AU_MOBILE = "+61412345678"  # not geographical in AU: every Australian zone
SYDNEY = "+61212345678"
RU_MOBILE = "+79123456789"  # not geographical in RU: every +7 zone
MOSCOW = "+74951234567"
ES_MOBILE = "+34612345678"  # Madrid and the Canaries
MADRID = "+34912345678"
UK_MOBILE = "+447400123456"
REAL_NUMBERS = [
    NEW_YORK,
    LOS_ANGELES,
    CHICAGO,
    ALASKA,
    HONOLULU,
    US_TOLL_FREE,
    MEXICO_CITY,
    SAO_PAULO,
    MANAUS,
    AU_MOBILE,
    SYDNEY,
    RU_MOBILE,
    MOSCOW,
    ES_MOBILE,
    MADRID,
    UK_MOBILE,
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def phonenumbers_zones(phone: str) -> list[str]:
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ["Etc/Unknown"]
    return list(pn_timezone.time_zones_for_number(number))


def allowed_one(phone: str, now: datetime, quiet: QuietHours = NIGHT) -> datetime:
    value = next_allowed(pl.Series([phone]), now, quiet)[0]
    assert isinstance(value, datetime)
    return value


def brute_force(zones: list[str], now: datetime, quiet: QuietHours) -> datetime:
    """Minute by minute: the earliest moment outside quiet hours in all zones (or, when there
    is none, in as many as possible). Unknown means UTC."""
    infos = [ZoneInfo("UTC" if z == "Etc/Unknown" else z) for z in zones]
    best: tuple[int, datetime] | None = None
    for minute in range(4 * 24 * 60):
        moment = now + timedelta(minutes=minute)
        count = sum(quiet.is_quiet(moment.astimezone(z).time()) for z in infos)
        if count == 0:
            return moment
        if best is None or count < best[0]:
            best = (count, moment)
    assert best is not None
    return best[1]


# --- zones ------------------------------------------------------------------------------------


def test_the_real_numbers_are_valid():
    assert all(check_phones(pl.Series(REAL_NUMBERS))["valid"])


def test_zones_agree_with_phonenumbers_on_real_numbers():
    got = zones_for(pl.Series(REAL_NUMBERS)).to_list()
    assert got == [phonenumbers_zones(p) for p in REAL_NUMBERS]
    by_number = dict(zip(REAL_NUMBERS, got, strict=True))
    assert by_number[NEW_YORK] == ["America/New_York"]
    assert by_number[MEXICO_CITY] == ["America/Mexico_City"]  # MX mobiles are geographical
    assert by_number[MANAUS] == ["America/Manaus"]
    assert "Australia/Perth" in by_number[AU_MOBILE]
    assert {"Europe/Moscow", "Asia/Kamchatka"} <= set(by_number[RU_MOBILE])
    assert by_number[MOSCOW] == ["Europe/Moscow"]
    assert len(by_number[US_TOLL_FREE]) > 30


def test_zones_agree_with_phonenumbers_for_every_region_and_type():
    """Example numbers of every region and number type, last digits varied."""
    kinds = [
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.VOIP,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.UAN,
        PhoneNumberType.PAGER,
        PhoneNumberType.PERSONAL_NUMBER,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.VOICEMAIL,
    ]
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in kinds:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
                numbers += [e164[:-2] + f"{i:02d}" for i in range(0, 100, 9)]
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            numbers.append(phonenumbers.format_number(example, PhoneNumberFormat.E164))
    numbers += ["+999123", "nonsense", "+1", "+12125551234567"]
    got = zones_for(pl.Series(numbers)).to_list()
    expected = [phonenumbers_zones(p) for p in numbers]
    wrong = [(n, g, e) for n, g, e in zip(numbers, got, expected, strict=True) if g != e]
    assert not wrong[:5]


def test_zones_of_the_sample_campaign_agree_with_phonenumbers():
    phones = pl.read_csv(ROOT / "data" / "sample-campaign.tsv", separator="\t", infer_schema=False)[
        "CONTACT"
    ]
    got = zones_for(phones).to_list()
    assert got == [phonenumbers_zones(p) for p in phones]


def test_nulls_and_duplicates_keep_their_rows():
    got = zones_for(pl.Series([NEW_YORK, None, NEW_YORK, "garbage"])).to_list()
    assert got == [["America/New_York"], None, ["America/New_York"], ["Etc/Unknown"]]


def test_countries_from_the_validation_report_give_the_same_zones():
    phones = pl.Series(REAL_NUMBERS)
    countries = check_phones(phones)["region"]
    assert zones_for(phones, countries).to_list() == zones_for(phones).to_list()
    now = utc(2026, 12, 2, 3, 0)
    assert next_allowed(phones, now, countries=countries).equals(next_allowed(phones, now))


# --- the window ---------------------------------------------------------------------------------


def test_each_recipient_waits_for_their_own_morning():
    now = utc(2026, 12, 2, 3, 0)  # 22:00 in New York, 19:00 in Los Angeles, 04:00 in Madrid
    phones = [NEW_YORK, LOS_ANGELES, MEXICO_CITY, MOSCOW, HONOLULU]
    got = next_allowed(pl.Series(phones), now).to_list()
    assert got == [
        utc(2026, 12, 2, 13, 0),  # 08:00 EST
        now,  # 19:00 in Los Angeles: not quiet
        utc(2026, 12, 2, 14, 0),  # 21:00 in Mexico City (UTC-6, no DST) is quiet: 08:00
        utc(2026, 12, 2, 5, 0),  # 06:00 in Moscow (UTC+3): 08:00 is 05:00 UTC
        now,  # 17:00 in Honolulu
    ]


def test_start_is_quiet_and_end_is_not():
    assert allowed_one(NEW_YORK, utc(2026, 12, 2, 2, 0)) == utc(2026, 12, 2, 13, 0)  # 21:00
    assert allowed_one(NEW_YORK, utc(2026, 12, 2, 1, 59)) == utc(2026, 12, 2, 1, 59)  # 20:59
    assert allowed_one(NEW_YORK, utc(2026, 12, 2, 13, 0)) == utc(2026, 12, 2, 13, 0)  # 08:00


def test_a_window_that_does_not_wrap_midnight():
    lunch = QuietHours(time(12, 0), time(14, 0))
    assert allowed_one(NEW_YORK, utc(2026, 12, 2, 17, 30), lunch) == utc(2026, 12, 2, 19, 0)
    assert allowed_one(NEW_YORK, utc(2026, 12, 2, 3, 0), lunch) == utc(2026, 12, 2, 3, 0)


def test_start_equal_to_end_means_no_quiet_hours():
    never = QuietHours(time(9, 0), time(9, 0))
    now = utc(2026, 12, 2, 3, 0)
    assert next_allowed(pl.Series(REAL_NUMBERS), now, never).to_list() == [now] * len(REAL_NUMBERS)
    assert waiting_summary(pl.Series(REAL_NUMBERS), now, never).waiting == 0


def test_a_naive_now_is_utc():
    assert allowed_one(NEW_YORK, datetime(2026, 12, 2, 3, 0)) == utc(2026, 12, 2, 13, 0)


def test_the_most_cautious_zone_decides():
    # Alaska numbers: Anchorage (UTC-9) and Adak (UTC-10) in December. At 17:30 UTC it is
    # 08:30 in Anchorage but 07:30 in Adak: wait for Adak's 08:00 (18:00 UTC).
    assert allowed_one(ALASKA, utc(2026, 12, 2, 17, 30)) == utc(2026, 12, 2, 18, 0)
    # Spanish mobiles: Madrid (UTC+1) and the Canaries (UTC+0): the Canaries wake last.
    assert allowed_one(ES_MOBILE, utc(2026, 12, 2, 7, 30)) == utc(2026, 12, 2, 8, 0)
    # ...and Madrid's 21:00 (20:00 UTC) starts quiet hours for the number.
    assert allowed_one(ES_MOBILE, utc(2026, 12, 2, 20, 0)) == utc(2026, 12, 3, 8, 0)


@pytest.mark.parametrize(
    "now",
    [
        utc(2026, 12, 2, 3, 0),
        utc(2026, 12, 2, 12, 17),
        utc(2026, 12, 2, 20, 45),
        utc(2026, 3, 8, 6, 0),  # US spring forward
        utc(2026, 3, 29, 0, 30),  # EU spring forward
        utc(2026, 10, 4, 15, 0),  # Sydney and Lord Howe spring forward
        utc(2026, 11, 1, 5, 30),  # US fall back
    ],
)
@pytest.mark.parametrize("quiet", [NIGHT, QuietHours(time(22, 30), time(7, 15))])
def test_multi_zone_numbers_match_a_minute_by_minute_search(now, quiet):
    phones = [ALASKA, AU_MOBILE, RU_MOBILE, ES_MOBILE, UK_MOBILE, US_TOLL_FREE, SAO_PAULO]
    got = next_allowed(pl.Series(phones), now, quiet).to_list()
    expected = [brute_force(phonenumbers_zones(p), now, quiet) for p in phones]
    assert got == expected


def test_russian_mobiles_get_the_few_hours_all_of_russia_is_awake():
    # Kaliningrad-to-Kamchatka spread: allowed only when Bucharest (UTC+2) is past 08:00 and
    # Anadyr/Kamchatka (UTC+12) is before 21:00: 06:00-09:00 UTC.
    assert allowed_one(RU_MOBILE, utc(2026, 12, 2, 10, 0)) == utc(2026, 12, 3, 6, 0)
    assert allowed_one(RU_MOBILE, utc(2026, 12, 2, 7, 0)) == utc(2026, 12, 2, 7, 0)


def test_zones_with_no_shared_waking_hours_get_the_most_zones_awake():
    # +1 toll-free: Guam (UTC+10) to Pago Pago (UTC-11) never share 08:00-21:00.
    now = utc(2026, 12, 2, 3, 0)
    got = allowed_one(US_TOLL_FREE, now)
    assert got == brute_force(phonenumbers_zones(US_TOLL_FREE), now, NIGHT)
    assert got >= now


def test_clocks_going_forward():
    # 2026-03-08, New York: 02:00 EST becomes 03:00 EDT. At 01:00 EST the number waits for
    # 08:00 EDT, which is 12:00 UTC (13:00 UTC the day before).
    assert allowed_one(NEW_YORK, utc(2026, 3, 8, 6, 0)) == utc(2026, 3, 8, 12, 0)
    assert allowed_one(NEW_YORK, utc(2026, 3, 7, 6, 0)) == utc(2026, 3, 7, 13, 0)
    # Madrid, 2026-03-29: 02:00 CET becomes 03:00 CEST; 08:00 CEST is 06:00 UTC.
    assert allowed_one(MADRID, utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 6, 0)
    assert allowed_one(MADRID, utc(2026, 3, 28, 1, 0)) == utc(2026, 3, 28, 7, 0)
    # Moscow keeps UTC+3 all year: 08:00 is 05:00 UTC either side.
    assert allowed_one(MOSCOW, utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 5, 0)


def test_clocks_going_back():
    # 2026-11-01, New York: 02:00 EDT becomes 01:00 EST; 08:00 EST is 13:00 UTC.
    assert allowed_one(NEW_YORK, utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 13, 0)
    assert allowed_one(NEW_YORK, utc(2026, 10, 31, 5, 30)) == utc(2026, 10, 31, 12, 0)


def test_an_end_that_falls_in_the_skipped_hour_waits_until_after_the_jump():
    # Quiet until 02:30, on the night 02:00-03:00 does not exist: never texted at 01:59 EST
    # (still quiet); the documented answer is 03:30 EDT (07:30 UTC): late rather than early.
    quiet = QuietHours(time(21, 0), time(2, 30))
    got = allowed_one(NEW_YORK, utc(2026, 3, 8, 6, 0), quiet)
    assert got == utc(2026, 3, 8, 7, 30)
    assert not quiet.is_quiet(got.astimezone(ZoneInfo("America/New_York")).time())


def test_an_unknown_zone_is_taken_as_utc():
    assert zones_for(pl.Series(["+999123"])).to_list() == [["Etc/Unknown"]]
    assert allowed_one("+999123", utc(2026, 12, 2, 23, 0)) == utc(2026, 12, 3, 8, 0)
    assert allowed_one("+999123", utc(2026, 12, 2, 12, 0)) == utc(2026, 12, 2, 12, 0)


def test_a_null_number_has_no_time():
    got = next_allowed(pl.Series([None, NEW_YORK], dtype=pl.Utf8), utc(2026, 12, 2, 3, 0))
    assert got.dtype == pl.Datetime("us", "UTC")
    assert got.to_list() == [None, utc(2026, 12, 2, 13, 0)]


# --- the launch preview ----------------------------------------------------------------------


def test_waiting_summary_counts_who_waits_and_until_when():
    now = utc(2026, 12, 2, 3, 0)
    phones = [NEW_YORK, LOS_ANGELES, CHICAGO, MEXICO_CITY, SAO_PAULO, MOSCOW, None]
    summary = waiting_summary(pl.Series(phones, dtype=pl.Utf8), now)
    # waiting: New York (13:00), Chicago (14:00), Mexico City (14:00), Sao Paulo (00:00 local
    # -> 11:00 UTC), Moscow (06:00 local -> 05:00 UTC); Los Angeles (19:00) is not.
    assert (summary.contacts, summary.waiting) == (6, 5)
    assert summary.latest == utc(2026, 12, 2, 14, 0)
    assert summary.local_end == time(8, 0)
    rows = summary.by_country.to_dicts()
    assert rows[0] == {
        "country": "US",
        "contacts": 3,
        "waiting": 2,
        "latest": utc(2026, 12, 2, 14, 0),
    }
    assert {r["country"]: r["waiting"] for r in rows} == {"US": 2, "MX": 1, "BR": 1, "RU": 1}


def test_nobody_waits_in_the_afternoon():
    summary = waiting_summary(pl.Series([NEW_YORK, CHICAGO]), utc(2026, 12, 2, 18, 0))
    assert (summary.waiting, summary.latest) == (0, None)
    assert summary.by_country["latest"].to_list() == [None]
