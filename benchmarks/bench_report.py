"""Figures for `smartchat validate --report` on a file where every row fails. Not part of the suite.

    .venv/bin/python -m benchmarks.bench_report [--rows 200000] [--runs 3]

Builds a TSV of ROWS contacts for the payment-reminder chatbot in which every row has one
error (even rows: a phone number without its +, each one different; odd rows: an empty NAME),
then, each in a fresh process (so one run's memory never counts in another's):

  - read + validate only: what `--json` costs, the floor the report is added to
  - read + validate + `write_error_report`: the report writing alone (wall time, and its peak
    RSS: the process's peak is reset after validation via /proc/self/clear_refs, so the figure
    is what the process holds while writing, validated data included), and the whole run
  - `smartchat validate --json` and `--report` themselves, process start included (skipped,
    with the reason, when the CLI can't run)

Peak RSS is the kernel's VmHWM (see benchmarks/common.py for why not rusage).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

from benchmarks.common import run_smartchat, synthetic_contacts

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "data" / "payment-reminder.yaml"
TARGET_SECONDS = 10.0
TARGET_MB = 500.0

# Runs in a child process: prints one JSON object of figures.
_CHILD = """
import json, sys, time
from pathlib import Path

def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")

def peak_mb():
    return status_mb("VmHWM")

def reset_peak():
    # "5" resets VmHWM to the current RSS (Linux 4.0+): the next peak is the writer's own.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

contacts, bot_path, out = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
start = time.perf_counter()
from schemas.chatbot import load_chatbot
from smartchat.settings import load_settings
from tasks.ingest import read_contacts
from tasks.validation import validate_sheet
limit = load_settings().validation.max_message_chars
sheet = read_contacts(contacts)
report = validate_sheet(sheet, load_chatbot(bot_path), max_message_chars=limit)
validated = time.perf_counter()
figures = {"errors": len(report.errors), "validate_s": validated - start, "validate_mb": peak_mb()}
if out:
    from tasks.error_report import write_error_report
    figures["peak_reset"] = reset_peak()
    figures["held_mb"] = status_mb("VmRSS")
    before = time.perf_counter()
    write_error_report(sheet, report, out)
    done = time.perf_counter()
    figures.update(
        write_s=done - before, write_mb=peak_mb(), total_s=done - start,
        report_mb=Path(out).stat().st_size / 1e6,
    )
print(json.dumps(figures))
"""


def failing_contacts(rows: int) -> pl.DataFrame:
    """`rows` contacts, each with exactly one error: a phone without + or an empty NAME."""
    df = synthetic_contacts(rows).with_row_index("i")
    even = pl.col("i") % 2 == 0
    return df.select(
        pl.when(even).then(pl.col("CONTACT").str.strip_prefix("+")).otherwise("CONTACT"),
        pl.when(even).then(pl.col("NAME")).otherwise(pl.lit("")).alias("NAME"),
        "DUE_DATE",
        "AMOUNT",
    )


def run_child(contacts: Path, out: Path | None) -> dict[str, float]:
    args = [sys.executable, "-c", _CHILD, str(contacts), str(BOT)]
    done = subprocess.run(
        [*args, *([str(out)] if out else [])], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"benchmark child failed:\n{done.stderr[-2000:]}")
    if "Exception ignored" in done.stderr:
        print(f"warning: noise on stderr:\n{done.stderr[-800:]}")
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-cli", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        contacts = Path(tmp) / "failing.tsv"
        out = Path(tmp) / "errors.xlsx"
        failing_contacts(args.rows).write_csv(contacts, separator="\t", quote_style="never")
        run_child(contacts, None)  # warm the file cache and .pyc files

        plain = [run_child(contacts, None) for _ in range(args.runs)]
        peak = max(r["validate_mb"] for r in plain)
        print(
            f"read + validate {args.rows:,} rows, {int(plain[0]['errors']):,} errors: "
            f"{median(plain, 'validate_s'):.2f} s, peak RSS {peak:,.0f} MB"
        )

        reports = []
        for _ in range(args.runs):
            out.unlink(missing_ok=True)
            reports.append(run_child(contacts, out))
        write_s, write_mb = median(reports, "write_s"), max(r["write_mb"] for r in reports)
        verdict = "ok" if write_s <= TARGET_SECONDS and write_mb <= TARGET_MB else "MISSED"
        note = "" if reports[0]["peak_reset"] else " (peak not reset: whole-process peak)"
        held = median(reports, "held_mb")
        print(
            f"write_error_report alone: {write_s:.2f} s, peak RSS while writing "
            f"{write_mb:,.0f} MB{note} ({held:,.0f} MB already held: the validated sheet "
            f"and report); target ≤ {TARGET_SECONDS:g} s and ≤ {TARGET_MB:g} MB: {verdict}"
        )
        print(
            f"read + validate + report: {median(reports, 'total_s'):.2f} s; "
            f"report file {reports[0]['report_mb']:.1f} MB"
        )

        if not args.skip_cli:
            cli(contacts, out, args.runs)


def cli(contacts: Path, out: Path, runs: int) -> None:
    """`smartchat validate --json` and `--report` as a user runs them (exit 1: invalid file)."""
    for label, flags in (("--json", ["--json"]), ("--report", ["--report", str(out)])):
        figures = []
        for _ in range(runs):
            out.unlink(missing_ok=True)
            args = ["validate", str(contacts), "--chatbot", str(BOT), *flags]
            try:
                figures.append(run_smartchat(*args, ok=(1,)))
            except SystemExit as exc:  # the CLI can't run right now: say why, keep the rest
                print(f"smartchat validate {label}: not measured ({str(exc.code)[-300:]})")
                break
        else:
            wall = statistics.median(f[0] for f in figures)
            print(
                f"smartchat validate {label} (process start included): {wall:.2f} s, "
                f"peak RSS {max(f[1] for f in figures):,.0f} MB"
            )


if __name__ == "__main__":
    main()
