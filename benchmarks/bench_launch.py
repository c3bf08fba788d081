"""Figures for campaigns and the store (issue 4). Prints them; not part of the test suite.

    .venv/bin/python -m benchmarks.bench_launch [--rows 1000000] [--campaigns 10]

Measures:
  - `smartchat launch --no-send` of 1,000,000 contacts (8 countries, 3 custom columns, .tsv) as a
    fresh subprocess, process start included (target: at most 15 s), into an empty store and
    into one that already holds a million contacts; peak memory of the process
  - opening and closing the store file (read-only and read-write) once it holds 1M+ rows, and
    the lock hold time of one sender-like batch (1,000 messages) into 30M messages
  - `campaign_summary` over 10 campaigns x 1,000,000 contacts x 3 messages each (target: < 1 s),
    and the other analyst views, each in a fresh read-only connection (cold) and warm
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from benchmarks.common import run_smartchat, synthetic_contacts
from smartchat.settings import StoreSettings
from tasks import campaigns
from tasks.store import open_store, write_transaction
from tasks.store.messages import insert as insert_messages

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "benchmarks" / "out"
BOT = ROOT / "data" / "payment-reminder.yaml"


def timed_launch(contacts: Path, db: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `smartchat launch --no-send` process."""
    wall, peak, _ = run_smartchat(
        "launch", "-c", "payment-reminder", "--contacts", str(contacts), "--no-send", "--again",
        "--json",
        "--db", str(db),
    )  # fmt: skip
    return wall, peak


def median_time(runs: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def open_close(db: Path, read_only: bool) -> None:
    with open_store(StoreSettings(path=db), read_only=read_only):
        pass


def bench_launch(rows: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    contacts = OUT / f"launch-{rows}.tsv"
    if not contacts.exists():
        synthetic_contacts(rows).write_csv(contacts, separator="\t")
    db = OUT / "bench-launch.duckdb"
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    campaigns.register_chatbot(StoreSettings(path=db), BOT, max_message_chars=1600)
    print(f"\n`smartchat launch --no-send`, {rows:,} contacts, 8 countries (target <= 15 s)")
    for label in ("into an empty store", "into a store with 1 campaign", "again (3 campaigns)"):
        wall, rss = timed_launch(contacts, db)
        print(f"  {label:32s} {wall:6.2f} s   peak {rss:,.0f} MB")
    size = db.stat().st_size / 1e6
    print(f"\nOpen + close of the store ({3 * rows:,} contacts, {size:,.0f} MB), median of 5")
    print(
        f"  read-only                        {median_time(5, lambda: open_close(db, True)):.3f} s"
    )
    print(
        f"  read-write                       {median_time(5, lambda: open_close(db, False)):.3f} s"
    )
    return db


def build_summary_store(db: Path, n_campaigns: int, rows: int) -> None:
    """10 campaigns x rows contacts x 3 messages, 2 replies and an ended conversation each,
    generated inside DuckDB in bulk."""
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    campaigns.register_chatbot(StoreSettings(path=db), BOT, max_message_chars=1600)
    for c in range(n_campaigns):
        campaign_id = f"c-20261125-{c:04x}"
        with write_transaction(StoreSettings(path=db)) as conn:
            conn.execute(
                "INSERT INTO campaigns (id, name, chatbot_id, chatbot_version, status, "
                "contacts_file, contacts_sha256, contact_count, send_rate, send_enabled, "
                "launched_at) VALUES (?, ?, 'payment-reminder', 1, 'launched', 'bench.tsv', "
                "'0', ?, 100, true, now())",
                [campaign_id, f"Bench {c}", rows],
            )
            conn.execute(
                """
                INSERT INTO campaign_contacts
                SELECT ?, n + 2, '+5255' || lpad(n::VARCHAR, 8, '0'),
                       ['MX', 'US', 'ES', 'CO', 'AR', 'BR', 'GB', 'CL'][1 + n % 8],
                       [52, 1, 34, 57, 54, 55, 44, 56][1 + n % 8],
                       MAP {'NAME': 'Ana', 'DUE_DATE': '2026-12-01', 'AMOUNT': (n % 9000)::VARCHAR}
                FROM range(?) r(n)
                """,
                [campaign_id, rows],
            )
            # ask → (si: thanks | no: callback | otherwise) : 3 messages per contact.
            conn.execute(
                """
                INSERT INTO messages (campaign_id, phone, seq, step, kind, country, body,
                    segments, status, attempts, provider_id, sent_at, delivered_at, failed_at)
                SELECT ?, '+5255' || lpad(n::VARCHAR, 8, '0'), s,
                       CASE s WHEN 1 THEN 'ask' WHEN 2 THEN 'ask'
                              ELSE CASE WHEN n % 3 = 0 THEN 'callback' ELSE 'thanks' END END,
                       CASE s WHEN 2 THEN 'otherwise' ELSE 'say' END,
                       ['MX', 'US', 'ES', 'CO', 'AR', 'BR', 'GB', 'CL'][1 + n % 8],
                       'Hola Ana, tu pago de 100 vence el 2026-12-01. ¿Pagarás a tiempo?',
                       CASE s WHEN 1 THEN 2 ELSE 1 END,
                       CASE WHEN n % 20 = 0 THEN 'failed' ELSE 'delivered' END,
                       1, 'SM' || n::VARCHAR || '-' || s::VARCHAR, now(),
                       CASE WHEN n % 20 <> 0 THEN now() END, CASE WHEN n % 20 = 0 THEN now() END
                FROM range(?) r(n), range(1, 4) q(s)
                """,
                [campaign_id, rows],
            )
            conn.execute(
                """
                INSERT INTO replies (campaign_id, phone, seq, country, body, step,
                    matched_option, goto_step, opt_out, received_at)
                SELECT ?, '+5255' || lpad(n::VARCHAR, 8, '0'), s,
                       ['MX', 'US', 'ES', 'CO', 'AR', 'BR', 'GB', 'CL'][1 + n % 8],
                       CASE WHEN s = 1 THEN 'quizás' WHEN n % 3 = 0 THEN 'no' ELSE 'sí' END,
                       'ask',
                       CASE WHEN s = 1 THEN NULL WHEN n % 3 = 0 THEN 'no' ELSE 'si' END,
                       CASE WHEN s = 1 THEN NULL WHEN n % 3 = 0 THEN 'callback' ELSE 'thanks' END,
                       n % 100 = 1 AND s = 2, now()
                FROM range(?) r(n), range(1, 3) q(s)
                WHERE n % 20 <> 0
                """,
                [campaign_id, rows],
            )
            # Every conversation has ended: finished (replied), expired (failed or silent),
            # opted out: the summary views count them.
            conn.execute(
                """
                INSERT INTO conversation_state (campaign_id, phone, country, step, state,
                    end_reason, misses, turns, last_outbound_at, first_reply_at, last_reply_at,
                    ended_at)
                SELECT ?, '+5255' || lpad(n::VARCHAR, 8, '0'),
                       ['MX', 'US', 'ES', 'CO', 'AR', 'BR', 'GB', 'CL'][1 + n % 8],
                       CASE WHEN n % 20 = 0 THEN 'ask'
                            WHEN n % 3 = 0 THEN 'callback' ELSE 'thanks' END,
                       CASE WHEN n % 20 = 0 THEN 'expired' WHEN n % 100 = 1 THEN 'opted_out'
                            ELSE 'finished' END,
                       CASE WHEN n % 20 = 0 THEN 'expired' WHEN n % 100 = 1 THEN 'opted_out'
                            ELSE 'completed' END,
                       1, 1, now(), now(), now(), now()
                FROM range(?) r(n)
                """,
                [campaign_id, rows],
            )
        print(f"  built campaign {c + 1}/{n_campaigns}", end="\r", flush=True)
    print()


VIEWS = {
    "campaign_summary": "SELECT * FROM campaign_summary",
    "campaign_country_summary": "SELECT * FROM campaign_country_summary",
    "step_funnel": "SELECT * FROM step_funnel",
    "conversations, per state": "SELECT state, count(*) FROM conversations GROUP BY 1",
}


def view_time(db: Path, sql: str) -> tuple[float, float, int]:
    """Seconds in a fresh read-only connection (open included), then warm; rows returned."""
    start = time.perf_counter()
    with open_store(StoreSettings(path=db), read_only=True) as conn:
        result = conn.execute(sql).fetchall()
        cold = time.perf_counter() - start
        warm = median_time(3, lambda: conn.execute(sql).fetchall())
    return cold, warm, len(result)


def bench_views(n_campaigns: int, rows: int) -> None:
    db = OUT / "bench-views.duckdb"
    print(
        f"\nAnalyst views: {n_campaigns} campaigns x {rows:,} contacts x 3 messages (target < 1 s)"
    )
    start = time.perf_counter()
    build_summary_store(db, n_campaigns, rows)
    print(f"  (built {db.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - start:.0f} s)")
    for view, sql in VIEWS.items():
        cold, warm, n = view_time(db, sql)
        print(f"  {view:28s} cold {cold:5.2f} s   warm {warm:5.2f} s   ({n} rows)")
    print("\nThe lock, on this file")
    print(f"  open + close, read-only        {median_time(5, lambda: open_close(db, True)):.3f} s")
    print(f"  open + close, read-write       {median_time(5, lambda: open_close(db, False)):.3f} s")
    batch = pl.DataFrame(
        {
            "phone": [f"+5255{n:08d}" for n in range(1000)],
            "seq": [4] * 1000,
            "step": ["ask"] * 1000,
            "kind": ["otherwise"] * 1000,
            "country": ["MX"] * 1000,
            "body": ["Perdona, no entendí."] * 1000,
            "segments": [1] * 1000,
            "status": ["queued"] * 1000,
        }
    )

    def sender_batch() -> None:
        with write_transaction(StoreSettings(path=db)) as conn:
            insert_messages(conn, "c-20261125-0000", batch)

    print(f"  a 1,000-message sender batch   {median_time(3, sender_batch):.3f} s (open to close)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument("--skip-views", action="store_true")
    args = parser.parse_args()
    print(f"smartchat campaign benchmarks on {os.cpu_count()} cores")
    bench_launch(args.rows)
    if not args.skip_views:
        bench_views(args.campaigns, args.rows)


if __name__ == "__main__":
    main()
