"""How fast is `check_phones` on 1,000,000 valid numbers, against the phonenumbers loop?

    .venv/bin/python -m benchmarks.bench_phones [--rows 1000000] [--naive 50000]

Numbers are phonenumbers' example mobile and fixed-line numbers for several countries with
their last digits randomised, kept only where `check_phones` says valid (and the naive loop
re-checks a subsample, so a wrong filter would show as a mismatch).
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import time
from collections.abc import Callable

import phonenumbers
import polars as pl
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from tasks.phones import check_phones

REGIONS = ("MX", "US", "GB", "ES", "BR", "CO", "IN", "AR", "CA", "DE")
TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE)
SEED = 7


def candidates(count: int, rng: random.Random) -> list[str]:
    """`count` E.164 strings: example numbers with 4-6 random trailing digits."""
    bases: list[str] = []
    for region in REGIONS:
        for kind in TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                bases.append(phonenumbers.format_number(example, PhoneNumberFormat.E164))
    out = []
    for _ in range(count):
        base = rng.choice(bases)
        tail = rng.randint(4, 6)
        out.append(base[:-tail] + "".join(rng.choices("0123456789", k=tail)))
    return out


def valid_numbers(rows: int, rng: random.Random) -> pl.Series:
    """`rows` distinct valid numbers (oversample, filter with check_phones, dedupe)."""
    found = pl.Series("CONTACT", [], dtype=pl.Utf8)
    while found.len() < rows:
        batch = pl.Series("CONTACT", candidates(rows, rng))
        batch = batch.filter(check_phones(batch)["valid"])
        found = pl.concat([found, batch]).unique(maintain_order=True)
    return found.head(rows).shuffle(seed=SEED)


def best_of(runs: int, action: Callable[[], object]) -> tuple[float, float, float]:
    """(minimum, median) wall seconds and minimum CPU seconds (all threads) over `runs` runs.

    CPU time is the steadier figure on a shared machine: other processes inflate wall time.
    """
    walls, cpus = [], []
    for _ in range(runs):
        cpu, start = time.process_time(), time.perf_counter()
        action()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return min(walls), statistics.median(walls), min(cpus)


def naive(values: list[str]) -> list[bool]:
    """What check_phones replaces: parse, canonical form and is_valid_number, one by one."""
    out = []
    for value in values:
        try:
            number = phonenumbers.parse(value, None)
        except NumberParseException:
            out.append(False)
            continue
        canonical = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        out.append(canonical == value and phonenumbers.is_valid_number(number))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(SEED)

    start = time.perf_counter()
    distinct = valid_numbers(args.rows, rng)
    print(
        f"generated {distinct.len():,} distinct valid numbers over {len(REGIONS)} countries "
        f"in {time.perf_counter() - start:.1f} s"
    )
    counts = check_phones(distinct)["region"].value_counts(sort=True)
    print("  by region:", ", ".join(f"{r} {n:,}" for r, n in counts.iter_rows()))

    repeated = distinct.head(args.rows // 5).sample(args.rows, with_replacement=True, seed=SEED)
    with_bad = pl.concat([distinct.head(args.rows - args.rows // 100), _bad(args.rows // 100)])

    rows = f"{args.rows:,} rows"
    results: dict[str, float] = {}
    for label, series in (
        (f"{rows}, all distinct", distinct),
        (f"{rows}, {args.rows // 5:,} distinct", repeated),
        (f"{rows}, 1% invalid", with_bad),
    ):
        check_phones(series.head(1000))  # compile rules outside the timing, as a warm CLI would
        low, median, cpu = best_of(args.runs, functools.partial(check_phones, series))
        results[label] = median
        print(
            f"check_phones, {label:<30} wall min {low:.3f} s, median {median:.3f} s, "
            f"CPU {cpu:.3f} s ({series.len() / median / 1e6:.1f} M rows/s)"
        )

    sample = distinct.sample(args.naive, seed=SEED).to_list()
    start = time.perf_counter()
    verdicts = naive(sample)
    elapsed = time.perf_counter() - start
    assert all(verdicts), "check_phones kept a number phonenumbers rejects"
    per_second = len(sample) / elapsed
    extrapolated = distinct.len() / per_second
    print(
        f"phonenumbers loop on {len(sample):,}: {elapsed:.2f} s ({per_second:,.0f}/s), "
        f"extrapolated to {distinct.len():,}: {extrapolated:.1f} s"
    )
    print(f"speed-up, all distinct: {extrapolated / results[f'{rows}, all distinct']:.0f}x")


def _bad(count: int) -> pl.Series:
    rng = random.Random(SEED + 1)
    shapes = ("+44 7400 {}", "52{}", "+4407400{}", "+52155{}", "+52{}", "+999{}")
    values = [
        rng.choice(shapes).format("".join(rng.choices("0123456789", k=6))) for _ in range(count)
    ]
    return pl.Series("CONTACT", values)


if __name__ == "__main__":
    main()
