"""check_phones must agree with phonenumbers on every string; explain_phone must say why."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import phonenumbers
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat

from tasks import phones
from tasks.phones import (
    MAX_E164_DIGITS,
    RULE_FORMAT,
    RULE_INVALID,
    check_phones,
    explain_phone,
)

SEED = 20261125
Truths = list[tuple[bool, str | None, int | None]]
DESCS = (
    "general_desc",
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)


def truth(value: str | None) -> tuple[bool, str | None, int | None]:
    """The reference: canonical E.164 and is_valid_number, straight from phonenumbers."""
    if value is None:
        return False, None, None
    try:
        number = phonenumbers.parse(value, None)
    except NumberParseException:
        return False, None, None
    canonical = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if canonical != value or not phonenumbers.is_valid_number(number):
        return False, None, None
    return True, phonenumbers.region_code_for_number(number), number.country_code


def all_metadata() -> Iterator[tuple[int, str, PhoneMetadata]]:
    """Every region of every calling code, non-geographic ones included."""
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions:
            if region == "001":
                metadata = PhoneMetadata.metadata_for_nongeo_region(code, None)
            else:
                metadata = PhoneMetadata.metadata_for_region(region, None)
            if metadata is not None:
                yield code, region, metadata


def example_numbers() -> Iterator[tuple[int, str, PhoneMetadata]]:
    """(calling code, example national number, metadata) for every type of every region."""
    for code, _region, metadata in all_metadata():
        for name in DESCS:
            example = getattr(getattr(metadata, name, None), "example_number", None)
            if example:
                yield code, example, metadata


def mutations(rng: random.Random, code: int, nsn: str, metadata: PhoneMetadata) -> list[str]:
    """Near misses around one valid example: the strings where a regex port goes wrong."""
    plus = f"+{code}"

    def digit() -> str:
        return str(rng.randrange(10))

    i = rng.randrange(len(nsn))
    j = rng.randrange(len(nsn))
    swapped = nsn[:i] + digit() + nsn[i + 1 :]
    out = [
        plus + nsn,
        plus + swapped,
        plus + swapped[:j] + digit() + swapped[j + 1 :],
        plus + nsn[:-1],
        plus + nsn[:-2],
        plus + nsn + digit(),
        plus + nsn + digit() + digit(),
        plus + digit() + nsn,
        plus + nsn[:i] + "".join(digit() for _ in nsn[i:]),  # same prefix, random tail
        # random last digits: mostly still valid, so both verdicts are well represented
        *(plus + nsn[:-k] + "".join(digit() for _ in range(k)) for k in (1, 2, 3, 3, 4, 4)),
        plus + nsn[: max(1, i)] + "".join(digit() for _ in range(rng.randrange(0, 8))),
        plus + "".join(digit() for _ in range(rng.randrange(1, 18))),
        plus + "0" + nsn,
        plus + "00" + nsn,
        plus + "1" + nsn,
        plus + "8" + nsn,
        plus + "9" + nsn,
        plus + "15" + nsn,
        f"{plus} {nsn}",
        f"{plus}-{nsn[:3]}-{nsn[3:]}",
        f"{code}{nsn}",
        f"00{code}{nsn}",
        f" {plus}{nsn}",
        plus + nsn.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
    ]
    for prefix in {metadata.national_prefix, metadata.national_prefix_for_parsing}:
        if prefix and prefix.isdigit():
            out.append(plus + prefix + nsn)
            out.append(plus + prefix + swapped)
    # national prefixes with capture groups (AR "0?(?:(11|...)?15)?", BR, SM...): try their shapes
    if code == 54:
        out += [plus + nsn[:2] + "15" + nsn[2:], plus + "9" + nsn[:2] + "15" + nsn[4:]]
    if code == 55:
        out += [plus + "0" + "12" + nsn, plus + "90" + "21" + nsn]
    if code == 52:
        out += [plus + "1" + nsn[-10:]]
    return out


def random_strings(rng: random.Random, count: int) -> list[str]:
    """Unknown codes, zero codes and wild lengths."""
    return [
        "+" + "".join(str(rng.randrange(10)) for _ in range(rng.randrange(1, 22)))
        for _ in range(count)
    ]


# Strings where a shortcut in the vectorised path could go wrong: polars' integer cast accepts
# a leading + and leading zeros, exponents would fake the digit count, and so on.
TRICKY = [
    None,
    "",
    "+",
    "+1",
    "+12",
    "+123",
    "+0123456789",
    "++525512345678",
    "+0525512345678",
    "+5255123456e2",
    "+1e2",
    "+52 55 1234 5678",
    " +525512345678",
    "+525512345678 ",
    "+525512345678\n",
    "abc",
    "+5255x2345678",
    "+18446744073709551615",
    "+18446744073709551616",
    "+99999999999999999999",
    "+6281234567890123456",
    "+81123456789012345678",
]


@pytest.fixture(scope="module")
def sample() -> list[str | None]:
    rng = random.Random(SEED)
    values: list[str | None] = list(TRICKY)
    for _ in range(3):  # independent rounds of mutations per example
        for code, nsn, metadata in example_numbers():
            values += mutations(rng, code, nsn, metadata)
    values += random_strings(rng, 20_000)
    return values


@pytest.fixture(scope="module")
def truths(sample: list[str | None]) -> Truths:
    return [truth(v) for v in sample]


def test_sample_covers_every_region(truths: Truths) -> None:
    covered = {region for _, region, _ in truths}
    expected = {region for _, region, _ in all_metadata()}
    # EH and MF share +212 and +590 with MA and GP, which come first and accept all their
    # numbers: phonenumbers never names them for a number, so they can't be covered.
    unreachable = {"EH", "MF"}
    assert expected - covered == unreachable
    assert len(truths) > 100_000


def test_agrees_with_phonenumbers_everywhere(sample: list[str | None], truths: Truths) -> None:
    result = check_phones(pl.Series("CONTACT", sample, dtype=pl.Utf8))
    assert result.height == len(sample)
    assert result.schema == pl.Schema(
        {"valid": pl.Boolean, "region": pl.Utf8, "calling_code": pl.Int32}
    )
    got = list(zip(result["valid"], result["region"], result["calling_code"], strict=True))
    disagreements = [
        (value, mine, theirs)
        for value, mine, theirs in zip(sample, got, truths, strict=True)
        if mine != theirs
    ]
    valid = sum(1 for verdict in truths if verdict[0])
    print(f"\nagreement: {len(sample)} strings, {valid} valid, {len(disagreements)} disagree")
    assert disagreements[:20] == []
    # the sample must exercise both verdicts heavily, or agreement means little
    assert 30_000 < valid < len(sample) - 30_000


def test_regions_sharing_numbers_with_a_neighbour_are_reported_as_phonenumbers_does() -> None:
    """Western Sahara's and Saint-Martin's numbers are valid but phonenumbers places them in a
    neighbour (Morocco, Saint-Barthélemy): the fast path must say the same, never EH or MF."""
    examples = [phonenumbers.example_number(region) for region in ("EH", "MF")]
    numbers = [n for n in examples if n is not None]
    e164 = [phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in numbers]
    result = check_phones(pl.Series(e164, dtype=pl.Utf8))
    assert result["valid"].to_list() == [True, True]
    assert result["region"].to_list() == [phonenumbers.region_code_for_number(n) for n in numbers]
    assert not {"EH", "MF"} & set(result["region"].to_list())


def test_longest_valid_number_fits_the_integer_key() -> None:
    longest = max(
        len(str(code)) + max(getattr(metadata.general_desc, "possible_length", ()))
        for code, _, metadata in all_metadata()
    )
    assert longest <= MAX_E164_DIGITS


def test_multi_region_codes_get_the_right_region(sample: list[str | None], truths: Truths) -> None:
    shared = ("+1", "+7", "+44", "+61", "+590", "+599", "+262", "+47", "+358", "+39", "+212")
    picked = [(v, t) for v, t in zip(sample, truths, strict=True) if v and v.startswith(shared)]
    result = check_phones(pl.Series([v for v, _ in picked], dtype=pl.Utf8))
    regions = {r for r in result["region"] if r}
    assert {"US", "CA", "JM", "GB", "JE", "GG", "IM", "KZ", "RU", "CC", "CX", "AU"} <= regions
    assert result["region"].to_list() == [t[1] for _, t in picked]


def test_repeats_and_order_match_a_row_by_row_check(
    sample: list[str | None], truths: Truths
) -> None:
    rng = random.Random(SEED)
    picks = rng.choices(range(5_000), k=50_000)  # heavy repeats, shuffled
    result = check_phones(pl.Series([sample[i] for i in picks], dtype=pl.Utf8))
    assert result["region"].to_list() == [truths[i][1] for i in picks]
    assert result["valid"].to_list() == [truths[i][0] for i in picks]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
                st.text("0123456789", min_size=0, max_size=18),
            ).map(lambda t: f"+{t[0]}{t[1]}"),
            st.text("+0123456789 -().e\n\u0663\uff11", max_size=20),
            st.none(),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_agrees_on_generated_strings(values: list[str | None]) -> None:
    result = check_phones(pl.Series(values, dtype=pl.Utf8))
    got = list(zip(result["valid"], result["region"], result["calling_code"], strict=True))
    assert got == [truth(v) for v in values]


def prefix_shaped(rng: random.Random, per_region: int) -> list[tuple[int, str]]:
    """(code, national number) pairs starting like each code's national prefix: the only
    strings where parse's prefix stripping can turn a valid-looking number non-canonical."""
    out = []
    for code, region, metadata in all_metadata():
        prefix = metadata.national_prefix_for_parsing
        if not prefix or region != phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code][0]:
            continue
        lengths = sorted(set(getattr(metadata.general_desc, "possible_length", ())))
        examples = [e for _, e, m in example_numbers() if m is metadata]
        starts = sorted(set(re.findall(r"\d+", prefix.replace("\\d", ""))) | {"0", "1", "8"})
        for _ in range(per_region):
            start, size = rng.choice(starts), rng.choice(lengths)
            if examples and rng.random() < 0.5:
                nsn = (start + rng.choice(examples))[: rng.choice([size, 99])]
            else:
                nsn = start + "".join(str(rng.randrange(10)) for _ in range(size - len(start)))
            out.append((code, nsn))
    return out


def valid_without_parse(code: int, nsn: str) -> bool:
    """is_valid_number on the digits as they stand, with no national prefix stripping."""
    zeros = len(nsn) - len(nsn.lstrip("0"))
    number = phonenumbers.PhoneNumber(
        country_code=code,
        national_number=int(nsn),
        italian_leading_zero=zeros > 0,
        number_of_leading_zeros=min(zeros, len(nsn) - 1) or None,
    )
    return phonenumbers.is_valid_number(number)


def test_national_prefix_stripping_agrees() -> None:
    pairs = prefix_shaped(random.Random(SEED), per_region=300)
    values = [f"+{code}{nsn}" for code, nsn in pairs]
    expected = [truth(v) for v in values]
    # strings valid as written that parse rewrites (JP's 003768... carrier prefix, today): if
    # there were none, this test would not exercise the prefix logic at all
    rewritten = [
        v
        for (c, n), v, t in zip(pairs, values, expected, strict=True)
        if not t[0] and valid_without_parse(c, n)
    ]
    assert len(rewritten) >= 5
    result = check_phones(pl.Series(values, dtype=pl.Utf8))
    got = list(zip(result["valid"], result["region"], result["calling_code"], strict=True))
    assert [(v, g) for v, g, t in zip(values, got, expected, strict=True) if g != t] == []


def test_polars_integer_cast_accepts_only_plus_and_ascii_digits() -> None:
    """check_phones relies on this to avoid a shape regex; a polars upgrade must not change it."""
    odd = ["1e2", "1E2", "1_0", " 10", "10 ", "-10", "0x1F", "1.0", "\u0663\u0663", "\uff11\uff12"]
    odd += ["12\n", "\t12", "+-1", "++1", "1,000", "inf", "+ 1", "1+1", "", "+"]
    assert pl.Series(odd).cast(pl.UInt64, strict=False).null_count() == len(odd)
    assert pl.Series(["+12", "0012", "12"]).cast(pl.UInt64, strict=False).to_list() == [12] * 3


def test_untranslatable_codes_fall_back_to_phonenumbers(
    monkeypatch: pytest.MonkeyPatch, sample: list[str | None], truths: Truths
) -> None:
    real = phones._code_rules
    monkeypatch.setattr(
        phones, "_code_rules", lambda code: None if code in (1, 44, 52) else real(code)
    )
    picked = [
        (v, t) for v, t in zip(sample, truths, strict=True) if v and v[:3] in ("+1", "+44", "+52")
    ]
    result = check_phones(pl.Series([v for v, _ in picked], dtype=pl.Utf8))
    assert result["region"].to_list() == [t[1] for _, t in picked]
    assert sum(t[0] for _, t in picked) > 100


def test_translation_refuses_syntax_it_does_not_know() -> None:
    for pattern in (r"(?=1)\d", r"(\d)\1", r"\s\d", r"[0-9--5]", r"\d{,3}"):
        with pytest.raises(phones._Untranslatable):
            phones._rust(pattern)
    assert phones._rust(r"(?:1\d{2}|[2-9])$") == "(?:1[0-9]{2}|[2-9])$"
    assert phones._rust_replacement(r"9\1") == "9${1}"


def test_keeps_length_order_and_repeats() -> None:
    values = ["+525512345678", None, "+447400123456", "+525512345678", "5512345678", None]
    result = check_phones(pl.Series(values))
    assert result["valid"].to_list() == [True, False, True, True, False, False]
    assert result["region"].to_list() == ["MX", None, "GB", "MX", None, None]
    assert result["calling_code"].to_list() == [52, None, 44, 52, None, None]


def test_empty_and_all_null() -> None:
    assert check_phones(pl.Series([], dtype=pl.Utf8)).height == 0
    result = check_phones(pl.Series([None, None], dtype=pl.Utf8))
    assert result["valid"].to_list() == [False, False]


def test_known_cases() -> None:
    values = {
        "+4407400123456": False,  # trunk prefix: parse accepts, canonical drops the 0
        "+447400123456": True,
        "+5215512345678": False,  # old Mexican mobile form, invalid in phonenumbers 9
        "+80012345678": True,  # non-geographic freephone
        "+12682345678": False,  # Antigua owns 268: not valid there, not valid as US either
    }
    result = check_phones(pl.Series(list(values)))
    assert result["valid"].to_list() == list(values.values())
    assert [truth(v)[0] for v in values] == list(values.values())


# ------------------------------------------------------------------------------ explain_phone


def is_valid(value: str) -> bool:
    return truth(value)[0]


@pytest.mark.parametrize(
    ("raw", "kwargs", "rule", "suggestion", "words"),
    [
        ("525512345678", {}, RULE_FORMAT, "+525512345678", ["Missing the leading +", "Mexico"]),
        ("+52 55 1234 5678", {}, RULE_FORMAT, "+525512345678", ["spaces or dashes", "no spaces"]),
        ("+52-55-1234-5678", {}, RULE_FORMAT, "+525512345678", ["dashes"]),
        ("+52 (55) 1234.5678", {}, RULE_FORMAT, "+525512345678", ["brackets"]),
        ("00525512345678", {}, RULE_FORMAT, "+525512345678", ["00"]),
        ("+4407400123456", {}, RULE_FORMAT, "+447400123456", ["extra 0", "+44"]),
        ("+44 (0)7400 123456", {}, RULE_FORMAT, "+447400123456", ["extra 0", "spaces"]),
        ("+5215512345678", {}, RULE_FORMAT, "+525512345678", ["old Mexican mobile"]),
        ("", {}, RULE_FORMAT, None, ["empty"]),
        ("   ", {}, RULE_FORMAT, None, ["empty"]),
        ("+52 55 CALL NOW", {}, RULE_FORMAT, None, ["letters"]),
        ("+52551234567", {}, RULE_INVALID, None, ["Mexico (+52)", "check the digits"]),
        ("+999123456789", {}, RULE_INVALID, None, ["Unknown country code +999"]),
        ("+5255123456789012", {}, RULE_INVALID, None, ["Mexico (+52)"]),
        ("5512345678", {}, RULE_FORMAT, None, ["Missing the leading + and country code"]),
        ("525512345678", {"number_cell": True}, RULE_FORMAT, "+525512345678", ["Text", "+"]),
        ("525512345678.0", {"number_cell": True}, RULE_FORMAT, "+525512345678", ["Text"]),
        ("5.25512E+11", {"scientific": True}, RULE_FORMAT, None, ["scientific", "Text"]),
        ("+52 55 1234", {}, RULE_FORMAT, None, ["spaces", "Mexico"]),
        ("+8001234 5678", {}, RULE_FORMAT, "+80012345678", ["spaces"]),
        (" +525512345678", {}, RULE_FORMAT, "+525512345678", ["spaces"]),
        ("+0525512345678", {}, RULE_FORMAT, "+525512345678", ["extra 0", "after the +"]),
        ("52+5512345678", {}, RULE_FORMAT, "+525512345678", ["wrong place"]),
        ("+٥٢٥٥١٢٣٤٥٦٧٨", {}, RULE_FORMAT, "+525512345678", ["digits that are not 0-9"]),
        ("+", {}, RULE_FORMAT, None, ["no digits"]),
        ("#525512345678", {}, RULE_FORMAT, None, ["not digits"]),
        ("+1 999 555 0100", {}, RULE_FORMAT, None, ["United States", "+1"]),
        ("+12682345678", {}, RULE_INVALID, None, ["Antigua", "(+1)"]),
    ],
)
def test_explain_phone(
    raw: str, kwargs: dict[str, bool], rule: str, suggestion: str | None, words: list[str]
) -> None:
    # the rejection is real, and any suggestion is valid by phonenumbers' own judgement
    assert not is_valid(raw)
    problem = explain_phone(raw, **kwargs)
    assert problem.rule == rule
    assert problem.suggestion == suggestion
    if suggestion is not None:
        assert is_valid(suggestion)
        assert suggestion in problem.message
    for word in words:
        assert word in problem.message, problem.message
    assert problem.message.endswith(".") and problem.message[0].isupper()


def test_explain_rejects_valid_numbers() -> None:
    with pytest.raises(ValueError):
        explain_phone("+525512345678")


def test_every_rejected_sample_value_gets_an_explanation(
    sample: list[str | None], truths: Truths
) -> None:
    rng = random.Random(SEED)
    rejected = [v for v, t in zip(sample, truths, strict=True) if v is not None and not t[0]]
    for value in rng.sample(rejected, 3_000):
        problem = explain_phone(value)
        assert problem.rule in (RULE_FORMAT, RULE_INVALID)
        assert problem.message
        if problem.suggestion is not None:
            assert is_valid(problem.suggestion), (value, problem)
            assert "write it as" in problem.message


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="+0123456789 -().ab\u0665", max_size=22))
def test_explain_phone_never_crashes(raw: str) -> None:
    if is_valid(raw):
        with pytest.raises(ValueError):
            explain_phone(raw)
        return
    problem = explain_phone(raw)
    assert problem.rule in (RULE_FORMAT, RULE_INVALID)
    assert problem.message.endswith(".")
    if problem.suggestion is not None:
        assert is_valid(problem.suggestion)
    if problem.rule == RULE_INVALID:  # only for strings already in the E.164 shape
        assert raw.startswith("+") and raw[1:].isdigit() and raw[1:].isascii()


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("\u200e+525512345678", "U+200E LEFT-TO-RIGHT MARK"),
        ("\u200f+525512345678", "U+200F RIGHT-TO-LEFT MARK"),
        ("\u202b+525512345678\u202c", "U+202B RIGHT-TO-LEFT EMBEDDING"),
        ("\ufeff+525512345678", "U+FEFF"),
        ("\uff0b525512345678", "full-width ＋"),
    ],
)
def test_an_invisible_mark_or_a_full_width_plus_is_named_with_the_fix(raw: str, named: str):
    """The value looks right on screen: say which character is there and what to write."""
    problem = explain_phone(raw)
    assert named in problem.message
    assert problem.suggestion == "+525512345678"
    assert "+525512345678" in problem.message
    assert "not digits" not in problem.message
