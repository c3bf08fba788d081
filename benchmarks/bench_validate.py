"""Figures for contact validation (issue 3). Prints them; not part of the test suite.

    .venv/bin/pip install -e '.[bench]'      # xlsxwriter, to write the .xlsx input
    .venv/bin/python -m benchmarks.bench_validate [--rows 1000000]

The naive baseline runs in its own venv (benchmarks/out/baseline-venv, made on first use).

Measures, each `smartchat validate` as a fresh subprocess (process start included):
  - 1,000,000 contacts over 8 countries, 3 custom columns, .tsv: wall time and peak memory
  - the naive baseline (pandas read + phonenumbers.parse + is_valid_number per row), same file
  - 100,000 contacts as .xlsx
  - a 10-row file
  - `smartchat launch --dry-run` of the 1M .tsv: validation plus quiet hours and cost (target:
    within 1.5x of validate alone)
  - the 1M .tsv and 100k .xlsx again in a venv that also has pandas (benchmarks/out/pandas-venv,
    made on first use): pandera imports pandas whenever it can, unless smartchat stops it
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import polars as pl

from benchmarks.common import run_smartchat, synthetic_contacts

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
BOT = ROOT / "data" / "payment-reminder.yaml"


def run_cli(path: Path, python: str = sys.executable) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and exit code of one `smartchat validate` process."""
    return run_smartchat(
        "validate", str(path), "--chatbot", str(BOT), "--json", ok=(0, 1), python=python
    )


def dry_run_preview(tsv: Path, validate_wall: float) -> None:
    """`launch --dry-run` of the same file: the report, plus quiet hours and cost."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "s.duckdb")
        run_smartchat("chatbot", "add", str(BOT), "--db", db)
        args = ("launch", "-c", "payment-reminder", "--contacts", str(tsv), "--dry-run", "--json")
        runs = [run_smartchat(*args, "--db", db) for _ in range(3)]
    wall = sorted(r[0] for r in runs)[1]
    print(
        f"smartchat launch --dry-run {tsv.name} (quiet hours and cost too): {wall:.2f} s wall "
        f"(median of 3), peak RSS {max(r[1] for r in runs):,.0f} MB: {wall / validate_wall:.2f}x "
        "validate alone (target <= 1.5x)"
    )


def pandas_python() -> str:
    """An interpreter with smartchat (this checkout, editable) and pandas: most data teams'."""
    venv = OUT / "pandas-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-e", str(ROOT), "pandas"], check=True
        )
    return str(python)


def naive_baseline(path: Path) -> float:
    """pandas read + phonenumbers per row, in its own venv so pandas never slows smartchat.

    (pandera imports pandas whenever it is installed: 0.6 s added to every smartchat start.)
    """
    venv = OUT / "baseline-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "pandas", "phonenumbers"], check=True
        )
    done = subprocess.run(
        [str(python), "-c", _BASELINE, str(path)], check=True, capture_output=True, text=True
    )
    return float(done.stdout)


_BASELINE = """
import sys, time
import pandas as pd, phonenumbers
start = time.perf_counter()
df = pd.read_csv(sys.argv[1], sep="\\t", dtype=str, keep_default_na=False)
ok = 0
for raw in df["CONTACT"]:
    try:
        ok += phonenumbers.is_valid_number(phonenumbers.parse(raw))
    except phonenumbers.NumberParseException:
        pass
print(time.perf_counter() - start)
"""


def write_xlsx(df: pl.DataFrame, path: Path) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = book.add_worksheet()
    for r, row in enumerate([tuple(df.columns), *df.iter_rows()]):
        sheet.write_row(r, 0, row)
    book.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=100_000)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    df = synthetic_contacts(args.rows)
    tsv, xlsx, small = OUT / "contacts-1m.tsv", OUT / "contacts-100k.xlsx", OUT / "contacts-10.tsv"
    df.write_csv(tsv, separator="\t", quote_style="never")
    df.head(10).write_csv(small, separator="\t", quote_style="never")
    write_xlsx(df.head(args.xlsx_rows), xlsx)
    print(f"generated {df.height:,} contacts over 8 countries")

    run_cli(small)  # warm the OS file cache and .pyc files, as a user's second run would be
    for label, path, target in (
        (f"{df.height:,} rows .tsv", tsv, 3.0),
        (f"{args.xlsx_rows:,} rows .xlsx", xlsx, 2.0),
        ("10 rows .tsv", small, 2.0),
    ):
        runs = [run_cli(path) for _ in range(3)]
        wall = sorted(r[0] for r in runs)[1]
        peak = max(r[1] for r in runs)
        verdict = "ok" if wall <= target and runs[0][2] == 0 else "MISSED"
        print(
            f"smartchat validate {label}: {wall:.2f} s wall (median of 3), "
            f"peak RSS {peak:,.0f} MB, exit {runs[0][2]}; target ≤ {target} s: {verdict}"
        )
        if path is tsv:
            tsv_wall = wall

    dry_run_preview(tsv, tsv_wall)

    with_pandas = pandas_python()
    run_cli(small, with_pandas)
    for label, path in (
        (f"{df.height:,} rows .tsv", tsv),
        (f"{args.xlsx_rows:,} rows .xlsx", xlsx),
    ):
        runs = [run_cli(path, with_pandas) for _ in range(3)]
        print(
            f"  with pandas installed, {label}: {sorted(r[0] for r in runs)[1]:.2f} s wall "
            f"(median of 3), peak RSS {max(r[1] for r in runs):,.0f} MB"
        )

    if not args.skip_baseline:
        base = naive_baseline(tsv)
        print(
            f"naive baseline (pandas + phonenumbers per row) {df.height:,} rows: {base:.1f} s; "
            f"speed-up {base / tsv_wall:.1f}x"
        )


if __name__ == "__main__":
    main()
