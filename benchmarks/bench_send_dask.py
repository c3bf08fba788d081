"""Sending on 2 Dask workers (issue 11): the combined rate against a sandbox at `--rate 400`.

The `send_campaign` flow with `workers=2` (Prefect's DaskTaskRunner on a temporary local
cluster of 2 processes) sends one campaign to the sandbox aggregator (its own process), with a
real `prefect server start` (its own process and home) holding the campaign's shared rate
limit, as a deployment would. Printed: the combined rate the sandbox saw (first message to last)
as a share of the campaign's rate, the busiest 1-second window, what each worker sent,
duplicates and missing contacts, and where the flow's time went.

Run from the project root: `.venv/bin/python -m benchmarks.bench_send_dask` (about 2 minutes on
2 cores; `--messages N --rate R --workers W` to change it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_send import busiest_second
from benchmarks.common import launched_campaign, prefect_server
from smartchat.settings import StoreSettings
from tasks.gateway.sandbox import SandboxConfig, running_sandbox

NOWHERE = "http://127.0.0.1:9"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=24_000)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = StoreSettings(path=tmp / "smartchat.duckdb")
        campaign_id = launched_campaign(store.path, args.messages, args.rate)
        with (
            running_sandbox(SandboxConfig(sent_delay=3600), process=True) as url,
            prefect_server(tmp),
        ):
            os.environ.update(
                SMARTCHAT_GATEWAY_URL=url,
                SMARTCHAT_PUBLIC_URL=NOWHERE,
                SMARTCHAT_DB=str(store.path),
                SMARTCHAT_QUIET_HOURS="00:00-00:00",  # the figure must not depend on the hour
            )
            from flows.send_campaign import send_campaign

            print(
                f"{args.messages:,} messages at --rate {args.rate:g} on {args.workers} Dask "
                "workers (a local cluster), a Prefect server of its own, the sandbox in its own "
                "process:"
            )
            started = time.perf_counter()
            summary = asyncio.run(send_campaign(campaign_id, workers=args.workers))
            wall = time.perf_counter() - started
            report(summary, url, args, wall)


def report(summary: dict[str, Any], url: str, args: argparse.Namespace, wall: float) -> None:
    messages = httpx.get(url + "/sandbox/messages", timeout=120).json()["messages"]
    outbound = [m for m in messages if m["direction"] == "outbound-api"]
    created = sorted(m["created_at"] for m in outbound)
    per_phone = Counter(m["to"] for m in outbound)
    rate = (len(created) - 1) / (created[-1] - created[0])
    busiest = busiest_second(created)
    timing = summary.get("timing", {})
    print(
        f"  combined rate {rate:,.1f}/s = {100 * rate / args.rate:.1f}% of {args.rate:g}/s "
        f"(first message to last, {created[-1] - created[0]:.1f} s); busiest 1-second window "
        f"{busiest} ({100 * busiest / args.rate:.1f}%)"
    )
    print(
        f"  {len(outbound):,} at the sandbox for {args.messages:,} contacts: "
        f"{sum(c - 1 for c in per_phone.values())} duplicates, "
        f"{args.messages - len(per_phone)} missing; flow says sent {summary['sent']:,}, "
        f"failed {summary['failed']:,}"
    )
    start = created[0]
    per_5s = Counter(int((t - start) // 5) for t in created)
    print(
        "  messages per second, 5-second windows: "
        + " ".join(f"{per_5s[i] / 5:.0f}" for i in range(max(per_5s) + 1))
    )
    if timing:
        print(
            f"  flow wall {wall:.1f} s (cluster start-up included): requests in flight "
            f"{timing['http_seconds']:.1f} s, store {timing['store_seconds']:.1f} s, "
            f"neither {timing['orchestration_seconds']:.1f} s"
        )


if __name__ == "__main__":
    main()
