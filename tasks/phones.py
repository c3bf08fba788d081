"""E.164 phone validation for whole columns, agreeing exactly with `phonenumbers`.

`phonenumbers.parse` + `is_valid_number` judges about 53,000 numbers a second, so a 1M-row
contact file would spend ~19 s on it. `check_phones` reaches the same verdicts with polars
regexes built from phonenumbers' own metadata (per calling code, built on first use and cached
for the process), applied once per distinct value. For a string in the `+<digits>` shape it
reproduces what `parse` + `format_number(E164)` + `is_valid_number` + `region_code_for_number` do:

* calling code extraction: the first 1, 2 or 3 digits that form a known code;
* national prefix stripping in `parse`: `+4407400123456` parses as `+447400123456`, so it is not
  canonical and is rejected; capture-group transform rules (AR, BR, SM...) included;
* `_number_type_helper`: the general desc, then any type's pattern with its possible lengths (an
  empty list means "no rule of its own"), skipping mobile when it shares the fixed-line pattern;
* codes shared by several regions (+1, +7, +44...): the first region in metadata order whose
  `leading_digits` prefix-match or, without leading digits, for which the number is valid.

Python's `re` and Rust's `regex` (used by polars) both have leftmost-first semantics, so the
translated patterns (`\\d` becomes `[0-9]`: inputs are ASCII digits by then) match the same
strings. A code whose metadata ever uses syntax the translator does not know is judged by
phonenumbers itself. tests/test_phones.py checks agreement on >100k strings from every region.

`explain_phone` is the slow, exact judge for the few rejected rows: it says why, in one sentence
for the person who wrote the file, and suggests the canonical number when there is one.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
import polars as pl
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat
from phonenumbers.phonenumberutil import ValidationResult

from tasks.countries import calling_code_place

__all__ = [
    "RULE_FORMAT",
    "RULE_INVALID",
    "SPECIAL_TYPES",
    "PhoneProblem",
    "check_phones",
    "explain_phone",
]

RULE_FORMAT = "phone_format"
RULE_INVALID = "phone_invalid"

# phonenumbers' own limits (_MIN_LENGTH_FOR_NSN, _MAX_LENGTH_FOR_NSN, _MAX_LENGTH_COUNTRY_CODE):
# parse raises outside them, so such strings can never be canonical.
_MIN_NSN = 2
_MAX_NSN = 17
_MAX_CC_DIGITS = 3
# The longest valid number in the metadata has 19 digits (+62 and +81, code + 17). Longer strings
# can't be valid, and 19 digits fit an unsigned 64-bit integer: the key used to deduplicate.
# tests/test_phones.py checks this bound against the metadata.
MAX_E164_DIGITS = 19
_POWERS_OF_TEN = pl.Series([10**i for i in range(MAX_E164_DIGITS)], dtype=pl.UInt64)
_NON_GEO = "001"
_EXAMPLE = "+525512345678"

# The number types `_number_type_helper` tests before fixed line and mobile: none is tied to a
# place (tasks.quiet_hours gives them their country's zones).
SPECIAL_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)
# Every number type `_number_type_helper` accepts, except mobile (handled apart because it is
# skipped when it shares the fixed-line pattern). Order does not matter for validity.
_TYPES_BESIDES_MOBILE = (*SPECIAL_TYPES, "fixed_line")


# --------------------------------------------------------------------------------------------
# Reading phonenumbers' Python patterns: translation to Rust syntax, static analysis
# --------------------------------------------------------------------------------------------


class _Untranslatable(ValueError):
    """A metadata pattern uses syntax whose meaning could differ between `re` and Rust `regex`."""


# Everything phonenumbers' metadata uses today. Anything else (lookaround, backreferences, other
# escapes, Rust-only class operators like `--`) sends the calling code to the exact slow path
# instead of risking a silent difference.
_SAFE_PATTERN = re.compile(r"(?:\\d|\(\?:|[0-9\[\]\-|(){},?$])*")


def _rust(pattern: str) -> str:
    if not _SAFE_PATTERN.fullmatch(pattern) or "--" in pattern or "{," in pattern:
        raise _Untranslatable(pattern)
    return pattern.replace(r"\d", "[0-9]")


def _rust_replacement(rule: str) -> str:
    """`re.sub` template (`9\\1`) to Rust (`9${1}`); braces keep `${1}0` unambiguous."""
    if re.search(r"\\(?!\d)", rule):
        raise _Untranslatable(rule)
    return re.sub(r"\\(\d+)", r"${\1}", rule.replace("$", "$$"))


def _parsed(pattern: str) -> Any:
    import re._parser as sre  # stdlib internals: a surprise only costs a skipped optimisation

    return sre.parse(pattern)


def _match_lengths(pattern: str) -> frozenset[int] | None:
    """Every length of string `pattern` can fully match, or None if not worked out.

    Where a pattern already implies its possible lengths (every desc in the metadata but the US
    general one), the length test is dropped: one regex pass per row instead of two.
    """
    try:
        lengths = _sequence_lengths(_parsed(pattern))
    except Exception:
        return None
    return frozenset(lengths) if lengths is not None else None


def _sequence_lengths(items: Any) -> set[int] | None:
    import re._constants as c

    total = {0}
    for op, arg in items:
        part: set[int] | None
        if op in (c.LITERAL, c.IN, c.ANY, c.NOT_LITERAL):
            part = {1}
        elif op == c.SUBPATTERN:
            part = _sequence_lengths(arg[3])
        elif op == c.BRANCH:
            branches = [_sequence_lengths(branch) for branch in arg[1]]
            part = set().union(*branches) if None not in branches else None  # type: ignore[arg-type]
        elif op == c.MAX_REPEAT:
            part = _repeat_lengths(*arg)
        else:
            return None  # anchors, lookaround...: keep the explicit length test
        if part is None or len(total) * len(part) > 10_000:
            return None
        total = {a + b for a in total for b in part}
    return total


def _repeat_lengths(low: int, high: int, body: Any) -> set[int] | None:
    inner = _sequence_lengths(body)
    if inner is None or high > _MAX_NSN:  # unbounded, or longer than any number anyway
        return None
    out: set[int] = set()
    reach = {0}
    for count in range(high + 1):
        if count >= low:
            out |= reach
        reach = {a + b for a in reach for b in inner}
    return out


def _first_digits(pattern: str) -> frozenset[str] | None:
    """Digits every match of `pattern` starts with, or None (unknown, or it can match "")."""
    try:
        first, nullable = _sequence_first(_parsed(pattern))
    except Exception:
        return None
    return frozenset(first) if first is not None and not nullable else None


def _sequence_first(items: Any) -> tuple[set[str] | None, bool]:
    """(possible first characters, can the sequence match the empty string)."""
    out: set[str] = set()
    for op, arg in items:
        first, nullable = _item_first(op, arg)
        if first is None:
            return None, False
        out |= first
        if not nullable:
            return out, False
    return out, True


def _item_first(op: Any, arg: Any) -> tuple[set[str] | None, bool]:
    import re._constants as c

    if op == c.LITERAL:
        return {chr(arg)}, False
    if op == c.IN:
        return _class_chars(arg), False
    if op == c.SUBPATTERN:
        return _sequence_first(arg[3])
    if op == c.BRANCH:
        results = [_sequence_first(branch) for branch in arg[1]]
        if any(first is None for first, _ in results):
            return None, False
        return set().union(*(f for f, _ in results if f)), any(n for _, n in results)
    if op == c.MAX_REPEAT:
        first, nullable = _sequence_first(arg[2])
        return first, nullable or arg[0] == 0
    if op == c.AT:  # `$` and friends match the empty string
        return set(), True
    return None, False


def _class_chars(items: Any) -> set[str] | None:
    import re._constants as c

    chars: set[str] = set()
    for op, arg in items:
        if op == c.LITERAL:
            chars.add(chr(arg))
        elif op == c.RANGE:
            chars.update(chr(code) for code in range(arg[0], arg[1] + 1))
        elif op == c.CATEGORY and arg == c.CATEGORY_DIGIT:
            chars.update("0123456789")  # inputs are ASCII digits only
        else:
            return None
    return chars


# --------------------------------------------------------------------------------------------
# Rules per region and per calling code, built on first use and cached for the process
# --------------------------------------------------------------------------------------------


def _lengths(desc: object) -> frozenset[int]:
    return frozenset(getattr(desc, "possible_length", None) or ())


def _pattern(desc: object) -> str | None:
    pattern = getattr(desc, "national_number_pattern", None)
    return pattern or None  # `_match_national_number` treats an empty pattern as "never"


def _length_rule(pattern: str, lengths: frozenset[int]) -> frozenset[int] | None:
    """Lengths to test besides `pattern`, or None when the pattern already implies them."""
    if not lengths:
        return None  # an empty possible_length list means "no rule of its own"
    implied = _match_lengths(pattern)
    return None if implied is not None and implied <= lengths else lengths


@dataclass(frozen=True)
class _Desc:
    """One or more PhoneNumberDescs as a full-match regex on the `<code><nsn>` digits."""

    regex: str
    lengths: frozenset[int] | None  # national number lengths; None: no separate test needed

    def expr(self) -> pl.Expr:
        matched = pl.col("digits").str.contains(self.regex)
        if self.lengths is None:
            return matched
        return pl.col("length").is_in(sorted(self.lengths)) & matched


@dataclass(frozen=True)
class _RegionRules:
    """One region's validity rules, as `_number_type_helper` applies them."""

    region: str
    leading_digits: str | None  # regex on the digits, national part anchored like re.match
    general: _Desc | None  # None: no number is valid
    types: tuple[_Desc, ...]  # valid if any matches
    general_first_digits: frozenset[str] | None

    def valid_expr(self) -> pl.Expr:
        if self.general is None or not self.types:
            return pl.lit(False)
        any_type = self.types[0].expr()
        for desc in self.types[1:]:
            any_type = any_type | desc.expr()
        return self.general.expr() & any_type


def _region_rules(region: str, metadata: PhoneMetadata, head: str) -> _RegionRules:
    """`head` is the calling code every regex starts with."""
    names = list(_TYPES_BESIDES_MOBILE)
    if not metadata.same_mobile_and_fixed_line_pattern:
        names.append("mobile")
    plain: dict[str, None] = {}  # ordered set of type patterns that need no length test
    tested: list[_Desc] = []
    for name in names:
        desc = getattr(metadata, name, None)
        pattern, lengths = _pattern(desc), _lengths(desc)
        if pattern is None or lengths == {-1}:  # -1: "no numbers of this type exist"
            continue
        rule = _length_rule(pattern, lengths)
        if rule is None:
            plain[_rust(pattern)] = None
        else:
            tested.append(_Desc(f"^{head}(?:{_rust(pattern)})$", rule))
    if plain:  # one regex for all of them: one pass over the column
        union = "|".join(f"(?:{p})" for p in plain)
        tested.insert(0, _Desc(f"^{head}(?:{union})$", None))
    general = _pattern(metadata.general_desc)
    general_lengths = _lengths(metadata.general_desc)
    leading = metadata.leading_digits
    return _RegionRules(
        region=region,
        leading_digits=f"^{head}(?:{_rust(leading)})" if leading is not None else None,
        general=(
            _Desc(f"^{head}(?:{_rust(general)})$", _length_rule(general, general_lengths))
            if general
            else None
        ),
        types=tuple(tested),
        general_first_digits=_first_digits(general) if general else frozenset(),
    )


@dataclass(frozen=True)
class _PrefixRules:
    """How `parse` may strip or rewrite a national prefix (with the main region's metadata)."""

    pattern: str  # national_prefix_for_parsing, translated, unanchored
    groups: int
    transform: str | None  # Rust replacement syntax
    general: str | None  # main region's general pattern (viability check, no lengths)
    lengths: frozenset[int]
    local_lengths: frozenset[int]
    first_digits: frozenset[str] | None  # None: may match the empty string, or unknown


@dataclass(frozen=True)
class _CodeRules:
    calling_code: int
    regions: tuple[_RegionRules, ...]  # metadata order: the first match owns the number
    lengths: frozenset[int]  # national number lengths some region could accept
    prefix: _PrefixRules | None  # None: parse can never rewrite a valid number of this code


def _metadata(calling_code: int, region: str) -> PhoneMetadata | None:
    if region == _NON_GEO:
        return PhoneMetadata.metadata_for_nongeo_region(calling_code, None)
    return PhoneMetadata.metadata_for_region(region, None)


def _prefix_rules(metadata: PhoneMetadata) -> _PrefixRules | None:
    npp = metadata.national_prefix_for_parsing
    if not npp:
        return None
    rule = metadata.national_prefix_transform_rule
    general = _pattern(metadata.general_desc)
    return _PrefixRules(
        pattern=_rust(npp),
        groups=re.compile(npp).groups,
        transform=_rust_replacement(rule) if rule else None,
        general=_rust(general) if general else None,
        lengths=_lengths(metadata.general_desc),
        local_lengths=frozenset(getattr(metadata.general_desc, "possible_length_local_only", ())),
        first_digits=_first_digits(npp),
    )


def _prefix_can_apply(prefix: _PrefixRules | None, regions: Sequence[_RegionRules]) -> bool:
    """Could a valid number start with the national prefix? If no region's general pattern
    starts with a digit the prefix starts with (US: "1" vs "[2-9]..."), skip the check."""
    if prefix is None:
        return False
    if prefix.first_digits is None:
        return True
    for region in regions:
        if region.general_first_digits is None:
            return True
        if region.general_first_digits & prefix.first_digits:
            return True
    return False


@functools.cache
def _code_rules(calling_code: int) -> _CodeRules | None:
    """Rules for one calling code, or None when it must take the exact slow path."""
    region_codes = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(calling_code, ())
    metadata = [(r, m) for r in region_codes if (m := _metadata(calling_code, r)) is not None]
    head = str(calling_code)
    try:
        regions = tuple(_region_rules(region, m, head) for region, m in metadata)
        # parse strips national prefixes with the code's main region, regions[0]
        main = _metadata(calling_code, region_codes[0]) if region_codes else None
        prefix = _prefix_rules(main) if main is not None else None
    except _Untranslatable:
        return None
    every_length = range(_MIN_NSN, _MAX_NSN + 1)
    lengths = frozenset().union(*(_lengths(m.general_desc) or every_length for _, m in metadata))
    prefix = prefix if _prefix_can_apply(prefix, regions) else None
    return _CodeRules(calling_code, regions, lengths, prefix)


@functools.cache
def _code_by_first_three_digits() -> pl.Series:
    """The calling code (or null) for each start 100-999 of a number's digits, read like
    `_extract_country_code`: the first 1, then 2, then 3 digits that form a known code."""
    known = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    codes = [
        next((c for c in (start // 100, start // 10, start) if c in known), None)
        if start >= 100
        else None
        for start in range(1000)
    ]
    return pl.Series(codes, dtype=pl.Int32)


# --------------------------------------------------------------------------------------------
# check_phones
# --------------------------------------------------------------------------------------------


def check_phones(phones: pl.Series) -> pl.DataFrame:
    """Same length and order as `phones` (Utf8, may contain nulls). Columns:

    valid: Boolean  -- True iff the string is exactly the canonical E.164 form
                       (phonenumbers.format_number(parse(s), E164) == s) AND is_valid_number
    region: Utf8    -- ISO 3166 alpha-2 region (phonenumbers.region_code_for_number) for valid
                       numbers ("001" for non-geographic), null for invalid ones
    calling_code: Int32 -- the country calling code for valid numbers, null otherwise
    """
    strings = phones.cast(pl.Utf8).rename("phone").rechunk()  # chunked input: slower gathers
    verdicts = _Verdicts()
    codes = _row_codes(strings, verdicts)
    return pl.DataFrame(
        {
            "valid": codes > 0,
            "region": verdicts.regions().gather(codes),
            "calling_code": verdicts.calling_codes().gather(codes),
        }
    )


@dataclass
class _Verdicts:
    """Small integer codes for (region, calling code) pairs; 0 means invalid.

    Rows carry a UInt32 code through sorting and scattering (cheap) instead of strings; region
    strings are gathered from this table once, at the end.
    """

    pairs: dict[tuple[str, int], int] = field(default_factory=dict)

    def code(self, region: str, calling_code: int) -> int:
        return self.pairs.setdefault((region, calling_code), len(self.pairs) + 1)

    def regions(self) -> pl.Series:
        return pl.Series([None, *(r for r, _ in self.pairs)], dtype=pl.Utf8)

    def calling_codes(self) -> pl.Series:
        return pl.Series([None, *(c for _, c in self.pairs)], dtype=pl.Int32)


def _row_codes(strings: pl.Series, verdicts: _Verdicts) -> pl.Series:
    """The verdict code of every row, judging each distinct number once.

    The key is the digits as an integer: distinct E.164-shaped strings give distinct integers.
    Sorting it puts equal numbers side by side; each run is judged once and its code scattered
    back to the rows' positions. On the 2-core reference machine this costs ~0.1 s per million
    rows, where unique() on the strings and a join back cost ~1 s (0.4 s + 0.6 s).
    """
    ordered = (
        strings.to_frame()
        .lazy()
        .with_row_index("row")
        .select("row", _e164_number().alias("number"))
        .drop_nulls("number")
        .sort("number")
        .with_columns(pl.col("number").rle_id().alias("run"))
        .collect()
    )
    # Digits from the integer, not the strings: gathering 1M strings by row costs ~0.25 s.
    distinct = (
        ordered.lazy()
        .filter(pl.col("run") != pl.col("run").shift(1, fill_value=-1))
        .select(
            pl.col("run").alias("slot"),
            "number",
            pl.col("number").cast(pl.Utf8).alias("digits"),
        )
        .collect()
    )
    distinct_codes = _distinct_codes(distinct, verdicts)
    codes = pl.zeros(strings.len(), pl.UInt32, eager=True)
    if ordered.height:
        codes.scatter(ordered["row"], distinct_codes.gather(ordered["run"]))
    return codes


def _e164_number() -> pl.Expr:
    """The digits after the + as an integer when `phone` is exactly + and 3-19 ASCII digits, the
    first not 0; null otherwise.

    Cheaper than a shape regex (which costs as much as the validation regexes): polars' integer
    cast accepts exactly an optional + then ASCII digits (tests/test_phones.py pins this), so
    ruling out "++" and "+0" and bounding the length leaves only the E.164 shape.
    """
    phone = pl.col("phone")
    shaped = (
        phone.str.starts_with("+")
        & ~phone.str.starts_with("++")
        & ~phone.str.starts_with("+0")
        & phone.str.len_bytes().is_between(1 + 1 + _MIN_NSN, 1 + MAX_E164_DIGITS)
    )
    return pl.when(shaped).then(phone.cast(pl.UInt64, strict=False))


def _distinct_codes(distinct: pl.DataFrame, verdicts: _Verdicts) -> pl.Series:
    """Verdict code per distinct number (same order), judged per calling code."""
    plans: list[pl.LazyFrame] = []
    slow: list[pl.DataFrame] = []
    # Eager partitions: lazily, polars would fuse the calling-code filter with the regex
    # predicates and run every code's regexes on every row.
    groups = _with_calling_code(distinct).partition_by("calling_code", as_dict=True)
    for (calling_code,), group in sorted(groups.items()):
        assert isinstance(calling_code, int)
        rules = _code_rules(calling_code)
        if rules is None:
            slow.append(_slow_codes(group, verdicts))
        else:
            plans.append(_code_plan(group, rules, verdicts))
    # One collect for all codes: polars runs the plans in parallel, and per-call overhead
    # (which dominates for files spanning many countries) is paid once.
    codes = pl.zeros(distinct.height, pl.UInt32, eager=True)
    found = [*pl.collect_all(plans), *slow]
    if found:
        valid = pl.concat(found)
        codes.scatter(valid["slot"], valid["code"])
    return codes


def _with_calling_code(distinct: pl.DataFrame) -> pl.DataFrame:
    """Adds the calling code and national number length; drops numbers with no known code."""
    number = pl.col("number")
    size = pl.col("digits").str.len_bytes().cast(pl.Int32)
    first_three = number // pl.lit(_POWERS_OF_TEN).gather(size - 3)
    code = pl.lit(_code_by_first_three_digits()).gather(first_three)
    calling_code = pl.col("calling_code")
    code_size = pl.when(calling_code >= 100).then(3).when(calling_code >= 10).then(2).otherwise(1)
    return (
        distinct.lazy()
        .with_columns(code.alias("calling_code"))
        .drop_nulls("calling_code")
        .with_columns((size - code_size).alias("length"))
        .filter(pl.col("length").is_between(_MIN_NSN, _MAX_NSN))
        .select("slot", "digits", "calling_code", "length")
        .collect()
    )


def _code_plan(group: pl.DataFrame, rules: _CodeRules, verdicts: _Verdicts) -> pl.LazyFrame:
    """(slot, code) of the valid numbers of one calling code, as a lazy plan."""
    possible = pl.col("length").is_in(sorted(rules.lengths))
    if len(rules.regions) == 1:
        region = rules.regions[0]
        code = verdicts.code(region.region, rules.calling_code)
        owned = group.lazy().filter(possible & region.valid_expr()).with_columns(_code(code))
    else:
        # keeps the concat typed when no row is valid
        regions = [group.clear().with_columns(_code(0))]
        regions += _assign_regions(group.filter(possible), rules, verdicts)
        owned = pl.concat(regions).lazy()
    if rules.prefix is not None:
        owned = _drop_reparsed(owned, rules.prefix, len(str(rules.calling_code)))
    return owned.select("slot", "code")


def _code(code: int) -> pl.Expr:
    return pl.lit(code, pl.UInt32).alias("code")


def _assign_regions(
    group: pl.DataFrame, rules: _CodeRules, verdicts: _Verdicts
) -> Iterator[pl.DataFrame]:
    """`_region_code_for_number_from_list` then `is_valid_number_for_region`, vectorised.

    Regions are tried in metadata order, peeling off the rows each one owns, so the common case
    (most +1 numbers are US, the first region) costs one pass. From the first region with
    leading digits on, one combined regex sets aside the rows no leading digits match: only
    regions without leading digits can own those (Canada, among 24 regions sharing +1).
    """
    regions = list(rules.regions)
    remaining = group
    while regions and regions[0].leading_digits is None and remaining.height:
        remaining = yield from _peel(remaining, regions.pop(0), rules.calling_code, verdicts)
    if not regions or not remaining.height:
        return
    combined = "|".join(f"(?:{r.leading_digits})" for r in regions if r.leading_digits)
    led = remaining.select(pl.col("digits").str.contains(combined)).to_series()
    unled = remaining.filter(~led)
    remaining = remaining.filter(led)
    for region in regions:
        if region.leading_digits is None and unled.height:
            unled = yield from _peel(unled, region, rules.calling_code, verdicts)
        if remaining.height:
            remaining = yield from _peel(remaining, region, rules.calling_code, verdicts)


def _peel(
    remaining: pl.DataFrame, region: _RegionRules, calling_code: int, verdicts: _Verdicts
) -> Generator[pl.DataFrame, None, pl.DataFrame]:
    """Yields the rows `region` owns that are valid for it; returns the rows it does not own."""
    code = _code(verdicts.code(region.region, calling_code))
    if region.leading_digits is None:  # owns exactly the rows valid for it
        mask = remaining.select(region.valid_expr()).to_series()
        yield remaining.filter(mask).with_columns(code)
    else:
        mask = remaining.select(pl.col("digits").str.contains(region.leading_digits)).to_series()
        yield remaining.filter(mask).filter(region.valid_expr()).with_columns(code)
    return remaining.filter(~mask)


def _drop_reparsed(valid: pl.LazyFrame, prefix: _PrefixRules, code_size: int) -> pl.LazyFrame:
    """Drop rows that `parse` would rewrite by stripping a national prefix (not canonical).

    Mirrors `_maybe_strip_national_prefix_carrier_code` and the length test in `parse`, on the
    rows where the prefix pattern matches something or captures its last group (Argentina's can
    match nothing). A plain match test first narrows the rows when the prefix can't be empty:
    capturing groups for every row costs several times more.
    """
    head = f"^[0-9]{{{code_size}}}"
    if prefix.first_digits is None:
        maybe = pl.lit(True)
    else:
        maybe = pl.col("digits").str.contains(f"{head}(?:{prefix.pattern})")
    groups = pl.col("digits").str.extract_groups(f"{head}({prefix.pattern})")
    matched = pl.col("matched").struct.field("1")
    last_group = pl.col("matched").struct.field(str(prefix.groups + 1))
    needs_check = (matched.str.len_bytes() > 0).fill_null(False)
    if prefix.transform is not None and prefix.groups > 0:
        needs_check = needs_check | last_group.is_not_null()
    valid = valid.with_columns(maybe.alias("maybe"))
    checked = (
        valid.filter(pl.col("maybe"))
        .with_columns(groups.alias("matched"))
        .filter(needs_check)
        .with_columns(pl.col("digits").str.slice(code_size).alias("nsn"))
        .with_columns(_after_prefix(prefix, matched, last_group).alias("stripped"))
        .filter(_rewritten(prefix))
        .select("slot")
    )
    return valid.drop("maybe").join(checked, on="slot", how="anti")


def _after_prefix(prefix: _PrefixRules, matched: pl.Expr, last_group: pl.Expr) -> pl.Expr:
    """The national number after `parse` strips (or transforms) the national prefix."""
    nsn = pl.col("nsn")
    cut = nsn.str.slice(matched.str.len_bytes())
    if prefix.transform is None or prefix.groups == 0:
        return cut
    # The transform rule applies only when the last capture group took part in the match.
    transformed = nsn.str.replace(f"^(?:{prefix.pattern})", prefix.transform)
    return pl.when(last_group.is_not_null()).then(transformed).otherwise(cut)


def _rewritten(prefix: _PrefixRules) -> pl.Expr:
    """Whether parse keeps the stripped number (so the original is not canonical)."""
    nsn, stripped = pl.col("nsn"), pl.col("stripped")
    if prefix.general is None:
        viable = still_viable = pl.lit(False)
    else:
        general = f"^(?:{prefix.general})$"
        viable, still_viable = nsn.str.contains(general), stripped.str.contains(general)
    size = stripped.str.len_bytes()
    # _test_number_length: anything but TOO_SHORT, IS_POSSIBLE_LOCAL_ONLY or INVALID_LENGTH
    long_enough = ~size.is_in(sorted(prefix.local_lengths)) & (
        size.is_in(sorted(prefix.lengths)) | (size > max(prefix.lengths, default=0))
    )
    return ~(viable & ~still_viable) & long_enough & (stripped != nsn)


def _slow_codes(group: pl.DataFrame, verdicts: _Verdicts) -> pl.DataFrame:
    """phonenumbers itself, for calling codes whose patterns could not be translated."""
    rows = []
    for slot, digits in zip(group["slot"], group["digits"], strict=True):
        verdict = _exact_verdict(f"+{digits}")
        if verdict is not None:
            rows.append((slot, verdicts.code(*verdict)))
    return pl.DataFrame(rows, schema={"slot": pl.UInt32, "code": pl.UInt32}, orient="row")


def _exact_verdict(phone: str) -> tuple[str, int] | None:
    """(region, calling code) when `phone` is canonical and valid per phonenumbers, else None."""
    try:
        number = phonenumbers.parse(phone, None)
    except NumberParseException:
        return None
    canonical = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if canonical != phone or not phonenumbers.is_valid_number(number):
        return None
    region = phonenumbers.region_code_for_number(number)
    return (region, number.country_code or 0) if region else None


# --------------------------------------------------------------------------------------------
# explain_phone
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhoneProblem:
    """Why one CONTACT value was rejected."""

    rule: str  # RULE_FORMAT: not in E.164 shape; RULE_INVALID: E.164 shape but not a valid number
    message: str  # one sentence for a non-technical user
    suggestion: str | None  # the corrected canonical E.164 string when one exists and is valid


@dataclass(frozen=True)
class _Judgement:
    """phonenumbers' verdict on a `+<digits>` string."""

    canonical: str | None  # the valid canonical form (possibly rewritten), if there is one
    sentence: str  # the problem as a whole sentence (when there is no canonical form)
    clause: str  # the same problem, to follow "Contains spaces or dashes, and ..."


_SEPARATORS = {" ": "spaces", "-": "dashes", ".": "dots", "(": "brackets", ")": "brackets"}
_OTHER_SEPARATORS = "/\u00a0\u2009\u202f\t\u2010\u2011\u2012\u2013\u2014\u2212"
_ALLOWED = re.compile(rf"[0-9+ .()\-{_OTHER_SEPARATORS}]*")
_LETTERS = re.compile(r"[^\W\d_]")
_FLOAT_CELL = re.compile(r"([0-9]+)\.0*")
_NUMBER_CELL = (
    "Stored as a number, so Excel dropped the leading +: format the CONTACT column as Text"
)
_MISSING_PLUS = "Missing the leading + and country code"


# Unicode categories of characters that show as nothing: format marks (U+200E, U+200F, U+202B,
# U+FEFF...), controls, line and paragraph separators.
_INVISIBLE = frozenset({"Cf", "Cc", "Zl", "Zp"})
_FULLWIDTH_PLUS = "\uff0b"


def _character_name(ch: str) -> str:
    """`U+200E LEFT-TO-RIGHT MARK`: the code a text editor can search for, and what it is."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}".strip()


def explain_phone(raw: str, *, number_cell: bool = False, scientific: bool = False) -> PhoneProblem:
    """Why `raw` was rejected, with phonenumbers as the exact judge (call it for rejected rows).

    `number_cell`: the value came from an Excel number cell, which drops the leading +.
    `scientific`: the value was a number shown in scientific notation, so digits were lost.
    Raises ValueError if `raw` is in fact a valid canonical E.164 number.
    """
    text = raw.strip()
    if not text:
        return PhoneProblem(RULE_FORMAT, "The phone number is empty.", None)
    if scientific:
        return PhoneProblem(
            RULE_FORMAT,
            "Stored as a number in scientific notation, so digits were lost: format the CONTACT "
            "column as Text and type the number again.",
            None,
        )
    notes = []
    # Marks that look like nothing (U+200E from a right-to-left page, a BOM, a zero-width
    # space) and a full-width ＋ make a number that looks right fail: name them, judge the rest.
    invisible = sorted({ch for ch in text if unicodedata.category(ch) in _INVISIBLE})
    if invisible:
        text = "".join(ch for ch in text if ch not in invisible).strip()
        names = ", ".join(_character_name(ch) for ch in invisible)
        what = "invisible characters" if len(invisible) > 1 else "an invisible character"
        notes.append(f"has {what} ({names}), often pasted along with a number")
    if _FULLWIDTH_PLUS in text:
        text = text.replace(_FULLWIDTH_PLUS, "+")
        notes.append("uses a full-width ＋ instead of +")
    if not text:
        return PhoneProblem(RULE_FORMAT, f"{_capitalise(notes[0])}, and nothing else.", None)
    if _LETTERS.search(text):
        message = f"Contains letters: write only + and digits, like {_EXAMPLE}."
        return PhoneProblem(RULE_FORMAT, message, None)
    if number_cell and (float_cell := _FLOAT_CELL.fullmatch(text)):
        text = float_cell.group(1)  # "525512345678.0" is how a float cell may read back
    if any(ch.isdecimal() and not ch.isascii() for ch in text):
        text = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)
        notes.append("uses digits that are not 0-9")  # Arabic-Indic, full-width...
    if not _ALLOWED.fullmatch(text):
        message = (
            f"Contains characters that are not digits: write only + and digits, like {_EXAMPLE}."
        )
        return PhoneProblem(RULE_FORMAT, message, None)
    digits = re.sub(r"[^0-9]", "", text)
    if not digits:
        return PhoneProblem(RULE_FORMAT, f"Has no digits: write it like {_EXAMPLE}.", None)
    return _explain_digits(text, digits, number_cell=number_cell, raw=raw, notes=notes)


def _explain_digits(
    text: str, digits: str, *, number_cell: bool, raw: str, notes: list[str]
) -> PhoneProblem:
    """`text` (`raw` stripped) holds only digits, + and separators; `notes` are problems found
    so far, as clauses."""
    candidate, shape = _candidate(text, digits)
    separators = _separator_clause(raw)  # spaces around the number count too
    clauses = [c for c in (shape, *notes, separators) if c]
    judged = _judge(candidate)

    if judged.canonical is not None:
        if judged.canonical != candidate:
            clauses.append(_rewrite_clause(candidate, judged.canonical))
        if not clauses:
            raise ValueError(f"{raw!r} is a valid E.164 phone number")
        if shape == _MISSING_PLUS:
            # The digits held a country code after all; naming the country guards against a
            # national number that happens to be valid somewhere else.
            place = calling_code_place(*_code_and_region(judged.canonical))
            lead = f"{_NUMBER_CELL} and" if number_cell else "Missing the leading +:"
            message = f"{lead} write it as {judged.canonical}, a number in {place}."
        else:
            tail = " (no spaces)" if separators else ""
            message = f"{_capitalise(' and '.join(clauses))}: write it as {judged.canonical}{tail}."
        return PhoneProblem(RULE_FORMAT, message, judged.canonical)
    if not clauses:
        return PhoneProblem(RULE_INVALID, judged.sentence, None)
    if shape == _MISSING_PLUS:
        # Most likely a national number: the country can't be guessed, so show the shape.
        fix = f"write it with + and the country code, like {_EXAMPLE}"
        lead = f"{_NUMBER_CELL} and" if number_cell else f"{_MISSING_PLUS}:"
        return PhoneProblem(RULE_FORMAT, f"{lead} {fix}.", None)
    message = f"{_capitalise(' and '.join(clauses))}, and {judged.clause}."
    return PhoneProblem(RULE_FORMAT, message, None)


def _candidate(text: str, digits: str) -> tuple[str, str | None]:
    """The `+<digits>` string the user most likely meant, and what is wrong with its shape."""
    plus_first = text.startswith("+") and text.count("+") == 1
    if plus_first and digits.startswith("0"):  # no calling code starts with 0
        zeros = digits[: len(digits) - len(digits.lstrip("0"))]
        return "+" + digits.lstrip("0"), f"has an extra {zeros} right after the +"
    if plus_first:
        return "+" + digits, None
    if "+" in text:
        return "+" + digits, "has a + in the wrong place"
    if digits.startswith("00"):
        return "+" + digits[2:], "starts with 00 instead of +"
    return "+" + digits, _MISSING_PLUS


def _judge(candidate: str) -> _Judgement:
    """phonenumbers' verdict on `+<digits>`, including the old Mexican mobile form."""
    try:
        number = phonenumbers.parse(candidate, None)
    except NumberParseException as err:
        return _parse_error(candidate, err)
    if phonenumbers.is_valid_number(number):
        return _Judgement(phonenumbers.format_number(number, PhoneNumberFormat.E164), "", "")
    old_mexican = _old_mexican_mobile(candidate)
    if old_mexican is not None:
        return _Judgement(old_mexican, "", "")
    code = number.country_code or 0
    place = calling_code_place(code, phonenumbers.region_code_for_number(number))
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == ValidationResult.TOO_SHORT:
        problem = f"too few digits for a phone number in {place}: check the digits"
        return _Judgement(None, f"{_capitalise(problem)}.", f"it has {problem}")
    if reason == ValidationResult.TOO_LONG:
        problem = f"too many digits for a phone number in {place}: check the digits"
        return _Judgement(None, f"{_capitalise(problem)}.", f"it has {problem}")
    problem = f"a valid phone number for {place}: check the digits"
    return _Judgement(None, f"Not {problem}.", f"it is not {problem}")


def _parse_error(candidate: str, err: NumberParseException) -> _Judgement:
    if err.error_type == NumberParseException.INVALID_COUNTRY_CODE:
        code = candidate[: 1 + _MAX_CC_DIGITS]
        return _Judgement(
            None, f"Unknown country code {code}.", f"the country code {code} is unknown"
        )
    if err.error_type == NumberParseException.TOO_LONG:
        problem = "too many digits for a phone number"
    else:  # TOO_SHORT_NSN, TOO_SHORT_AFTER_IDD; NOT_A_NUMBER: + and under 3 digits
        problem = "too few digits for a phone number"
    return _Judgement(None, f"{_capitalise(problem)}.", f"it has {problem}")


def _old_mexican_mobile(candidate: str) -> str | None:
    """+521 + 10 digits was Mexico's mobile form until 2019; phonenumbers 9 rejects it."""
    if not re.fullmatch(r"\+521[0-9]{10}", candidate):
        return None
    modern = "+52" + candidate[4:]
    return modern if _exact_verdict(modern) is not None else None


def _code_and_region(canonical: str) -> tuple[int, str | None]:
    number = phonenumbers.parse(canonical, None)
    return number.country_code or 0, phonenumbers.region_code_for_number(number)


def _rewrite_clause(candidate: str, canonical: str) -> str:
    """Why the canonical digits differ: a trunk prefix after the code, or the old +521 form."""
    if re.fullmatch(r"\+521[0-9]{10}", candidate) and canonical == "+52" + candidate[4:]:
        return "uses the old Mexican mobile form with a 1 after +52"
    code = str(phonenumbers.parse(canonical, None).country_code)
    national, canonical_national = candidate[1 + len(code) :], canonical[1 + len(code) :]
    if len(national) > len(canonical_national) and national.endswith(canonical_national):
        extra = national[: len(national) - len(canonical_national)]
        return f"has an extra {extra} after the country code +{code}"
    return "is not in the international form"


def _separator_clause(text: str) -> str | None:
    found = {name for char, name in _SEPARATORS.items() if char in text}
    if any(char in text for char in _OTHER_SEPARATORS) or text.strip(" ") != text.strip():
        found.add("other")
    if not found:
        return None
    if found <= {"spaces", "dashes"}:
        return "contains spaces or dashes"
    return "contains spaces, dashes, dots or brackets"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]
